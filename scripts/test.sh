#!/usr/bin/env bash
# The test command of the README and of CI: installs what is missing, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m pytest -q -ra "$@"
