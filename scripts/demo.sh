#!/usr/bin/env bash
# The demo command of the README: installs what is missing, then runs the two-node lab.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/wazod demo "$@"
