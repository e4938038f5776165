"""The Debian package, built by ./scripts/build-deb.sh and checked without installing it.

What fits CI's time: one build (dh-virtualenv, ~1 min), lintian without errors, the
package's files and conffiles, `wazod --version` and `wazod config check` run from the
built virtualenv, the man page, and `systemd-analyze verify` of the shipped unit. The
install on a clean Debian root (maintainer scripts, upgrade keeping an edited conffile,
remove, purge) is bench/debinstall, outside the default run (see the README).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest
from harness.util import free_port, wait_for

from wazod import __version__

ROOT = Path(__file__).resolve().parent.parent
BUILD_TOOLS = ("dpkg-buildpackage", "dh_virtualenv", "lintian", "argparse-manpage", "systemd-analyze")


def test_changelog_version_is_the_project_version():
    # the first line of debian/changelog: "wazod (VERSION) DISTRIBUTION; urgency=..."
    head = (ROOT / "debian" / "changelog").read_text().splitlines()[0]
    match = re.fullmatch(r"wazod \((?P<version>[^)]+)\) \S+; urgency=\w+", head)
    assert match, head
    version = match["version"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version == pyproject == __version__


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    missing = [tool for tool in BUILD_TOOLS if shutil.which(tool) is None]
    if missing and os.geteuid() != 0:
        pytest.skip(f"not root and missing {missing}: scripts/setup.sh installs them as root")
    assert not missing, f"missing {missing}: run scripts/setup.sh"
    out = tmp_path_factory.mktemp("deb")
    done = subprocess.run([str(ROOT / "scripts" / "build-deb.sh"), str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.name == f"wazod_{__version__}_{subprocess.check_output(['dpkg', '--print-architecture'], text=True).strip()}.deb"
    return path


@pytest.fixture(scope="module")
def tree(deb, tmp_path_factory) -> Path:
    """The package's files extracted; its venv's python (a link to /usr/bin/python3) made to resolve here."""
    root = tmp_path_factory.mktemp("tree")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    (root / "usr" / "bin" / "python3").symlink_to("/usr/bin/python3")
    return root


def _field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True).stdout.strip()


def test_lintian_finds_no_error(deb):
    done = subprocess.run(["lintian", "--fail-on", "error", "--no-tag-display-limit", str(deb.with_suffix(".changes"))],
                          capture_output=True, text=True, timeout=300)
    errors = [line for line in done.stdout.splitlines() if line.startswith("E:")]
    assert errors == [] and done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_control_fields(deb):
    assert _field(deb, "Package") == "wazod"
    assert _field(deb, "Version") == __version__
    depends = [d.strip() for d in _field(deb, "Depends").split(",")]
    assert {"postgresql-client", "rsync", "openssh-client"} <= set(depends)
    # the venv's lib/python3.X works with this minor version of Debian's python3 only
    major, minor = subprocess.run(["/usr/bin/python3", "-c", "import sys; print(*sys.version_info[:2])"],
                                  capture_output=True, text=True, check=True).stdout.split()
    assert f"python3 (>= {major}.{minor})" in depends and f"python3 (<< {major}.{int(minor) + 1})" in depends
    assert _field(deb, "Recommends") == "pigz"


def test_files_and_conffiles(deb, tree):
    control = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(control)) as tar:
        conffiles = tar.extractfile("./conffiles").read().decode().split()
    assert sorted(conffiles) == ["/etc/logrotate.d/wazod", "/etc/wazod/config.yml"]
    assert (tree / "etc/wazod/config.yml").read_bytes() == (ROOT / "etc/wazod/config.yml").read_bytes()
    assert (tree / "etc/logrotate.d/wazod").read_bytes() == (ROOT / "etc/logrotate.d/wazod").read_bytes()
    assert (tree / "etc/wazod/conf.d").is_dir() and not any((tree / "etc/wazod/conf.d").iterdir())
    assert (tree / "lib/systemd/system/wazod.service").read_bytes() == (ROOT / "systemd/wazod.service").read_bytes()
    assert (tree / "usr/share/snmp/mibs/WAZOD-MIB.txt").read_bytes() == (ROOT / "wazod/mibs/WAZOD-MIB.txt").read_bytes()
    wazod = tree / "usr/bin/wazod"
    assert wazod.is_symlink() and wazod.resolve() == (tree / "usr/lib/wazod/bin/wazod")
    assert (tree / "usr/lib/wazod/bin/wazod").read_text().startswith("#!/usr/lib/wazod/bin/python\n")
    # the venv runs Debian's interpreter, not a copy or the build machine's own
    assert os.readlink(tree / "usr/lib/wazod/bin/python3") == "../../../bin/python3"
    assert not list(tree.rglob("__pycache__")), "bytecode is compiled by the postinst, not shipped"
    assert not (tree / "opt").exists()


def test_man_page_is_generated_from_the_cli(tree):
    page = gzip.decompress((tree / "usr/share/man/man8/wazod.8.gz").read_bytes()).decode()
    assert page.startswith('.TH WAZOD 8 "')
    for command in ("run", "status", "replicate", "sync", "backup", "restore", "purge", "berofos", "maintenance"):
        assert f"OPTIONS 'wazod {command}'" in page, command
    rendered = subprocess.run(["man", "-l", "-"], input=page, capture_output=True, text=True,
                              env=dict(os.environ, MANWIDTH="100")).stdout
    assert "wazod - supervisor of a Wazo IPBX node and HA pair" in rendered


def _clean_env() -> dict[str, str]:
    """A bare environment, with the session's configuration cache (not the host's /var/cache/wazod)."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "WAZOD_CACHE_DIR": os.environ["WAZOD_CACHE_DIR"]}


def _venv_wazod(tree: Path, *args: str) -> subprocess.CompletedProcess:
    # the console script's shebang names /usr/lib/wazod/bin/python: run it with the extracted one
    return subprocess.run([str(tree / "usr/lib/wazod/bin/python"), str(tree / "usr/bin/wazod"), *args],
                          capture_output=True, text=True, timeout=60, cwd=tree,
                          env=_clean_env())


def test_built_venv_runs_wazod(tree):
    done = _venv_wazod(tree, "--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"wazod {__version__}"), done.stderr
    done = _venv_wazod(tree, "config", "check", "--config", str(tree / "etc/wazod/config.yml"))
    assert done.returncode == 0, done.stderr
    assert "configuration OK" in done.stdout
    # the venv's own site-packages, not the checkout's (cwd elsewhere) or the test run's venv
    done = subprocess.run([str(tree / "usr/lib/wazod/bin/python"), "-c", "import structlog, wazod; print(wazod.__file__)"],
                          capture_output=True, text=True, check=True, cwd=tree, env={"PATH": "/usr/bin:/bin"})
    assert done.stdout.strip().startswith(str(tree / "usr/lib/wazod/lib/python3"))


def test_built_venv_runs_the_daemon(tree, tmp_path):
    """`wazod run` from the package's venv: every part imports under Debian's python3 and it logs to its file."""
    log = tmp_path / "wazod.log"
    config = tmp_path / "config.yml"
    config.write_text(f"""
node: {{name: t, state_dir: "{tmp_path}/state", uuid_file: /nonexistent}}
ha: {{node_type: disabled, ha_conf: /nonexistent/ha.conf}}
status: {{listen: "127.0.0.1:{free_port()}"}}
logging: {{file: {log}}}
""")
    proc = subprocess.Popen([str(tree / "usr/lib/wazod/bin/python"), str(tree / "usr/bin/wazod"), "run", "--config",
                             str(config)], cwd=tree, env=_clean_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: log.exists() and '"daemon started"' in log.read_text(), timeout=60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0
        assert '"daemon stopped"' in log.read_text()
        started = json.loads(next(line for line in log.read_text().splitlines() if '"daemon started"' in line))
        assert started["level"] == "info" and started["parts"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_unit_passes_systemd_analyze_verify(tree, tmp_path):
    # the shipped unit, its ExecStart pointed at the extracted /usr/bin/wazod (not installed on this host)
    unit = tmp_path / "wazod.service"
    text = (tree / "lib/systemd/system/wazod.service").read_text()
    assert "ExecStart=/usr/bin/wazod run" in text
    unit.write_text(text.replace("/usr/bin/wazod", str(tree / "usr/bin/wazod")))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, MANPATH=str(tree / "usr/share/man")))
    assert done.returncode == 0 and "wazod.service" not in done.stderr, done.stderr
