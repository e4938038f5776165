"""pytest configuration shared by all wazod tests.

Only wiring lives here: the fixtures themselves are in tests/harness/.
"""
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Make ``import harness`` work whatever the import mode / rootdir is.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from harness.fixtures import *  # noqa: E402,F401,F403  (re-export fixtures)
from harness.util import install_sigterm_handler  # noqa: E402

# Tests using these fixtures get the marker automatically (e.g. -m "not lab").
_AUTO_MARKERS = {
    "lab": {"netns_lab", "netns_lab_witness", "make_netns_lab"},
    "pg": {"pg_cluster", "pg_pair", "make_pg_cluster"},
    "mqtt": {"mosquitto", "make_mosquitto"},
    "sshd": {"sshd", "make_sshd"},
}

_MARKERS = (
    "lab: needs root and network namespaces (added automatically to tests "
    "using the netns fixtures; skipped when unavailable)",
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
    install_sigterm_handler()
    # the validated-configuration cache of every wazod the tests run (in process or as a child) goes to a
    # directory of this session, not to the host's /var/cache/wazod (tests that study the cache set their own)
    if "WAZOD_CACHE_DIR" not in os.environ:
        os.environ["WAZOD_CACHE_DIR"] = config._wazod_cache_dir = tempfile.mkdtemp(prefix="wazod-config-cache-")


def pytest_unconfigure(config):
    created = getattr(config, "_wazod_cache_dir", None)
    if created:
        shutil.rmtree(created, ignore_errors=True)
        if os.environ.get("WAZOD_CACHE_DIR") == created:
            del os.environ["WAZOD_CACHE_DIR"]


def pytest_collection_modifyitems(config, items):
    """Tag tests by the harness fixtures they use, so ``-m "not lab"`` works."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in _AUTO_MARKERS.items():
            if names & fixtures:
                item.add_marker(marker)
