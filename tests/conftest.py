"""pytest configuration shared by all wazod tests.

Only wiring lives here: the fixtures themselves are in tests/harness/.
"""
import sys
from pathlib import Path

# Make ``import harness`` work whatever the import mode / rootdir is.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from harness.fixtures import *  # noqa: E402,F401,F403  (re-export fixtures)

_MARKERS = (
    "netns: needs root and network namespaces (skipped otherwise)",
    "pg: starts real PostgreSQL clusters",
    "mqtt: starts a real mosquitto broker",
    "sshd: starts a real sshd",
    "slow: takes more than a few seconds",
)


def pytest_configure(config):
    for line in _MARKERS:
        config.addinivalue_line("markers", line)
    # Default to asyncio auto mode (what pyproject.toml sets) unless the
    # command line chose a mode; an ini still at pytest-asyncio's default
    # "strict" is taken as "not configured".
    if getattr(config.option, "asyncio_mode", None) is None and \
            config.getini("asyncio_mode") == "strict":
        config.option.asyncio_mode = "auto"
