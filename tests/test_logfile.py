"""The daemon's log file (logging.file): same JSON lines as the journal, 0640 root:adm,
secrets masked, and rotated by the real logrotate with the shipped etc/logrotate.d/wazod."""

from __future__ import annotations

import grp
import gzip
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from harness.util import free_port, wait_for

from wazod.config import load_config
from wazod.errors import ConfigError
from wazod.logsetup import configure_logging, get_logger

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_LOGROTATE = ROOT / "etc" / "logrotate.d" / "wazod"


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "etc" / "config.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_auto_is_the_wazo_log_file_only_on_a_wazo_node(tmp_path):
    xivo = tmp_path / "xivo"
    cfg = _config(tmp_path, f"node: {{wazo_dir: {xivo}}}\nha: {{node_type: disabled, ha_conf: {xivo}/ha.conf}}\n")
    assert load_config(cfg).config.logging.file == "auto"  # the shipped value, the same on every host
    assert load_config(cfg).config.log_file is None  # no /etc/xivo: not a Wazo node, the journal only
    xivo.mkdir()
    assert load_config(cfg).config.log_file == "/var/log/wazod.log"
    cfg.write_text(f"node: {{wazo_dir: {xivo}}}\nlogging: {{file: null}}\n")
    assert load_config(cfg).config.log_file is None
    cfg.write_text(f"node: {{wazo_dir: {xivo}}}\nlogging: {{file: {tmp_path}/w.log}}\n")
    assert load_config(cfg).config.log_file == f"{tmp_path}/w.log"


def test_a_relative_log_file_is_a_config_error_naming_the_key(tmp_path):
    cfg = _config(tmp_path, "logging: {file: wazod.log}\n")
    with pytest.raises(ConfigError, match=r"logging\.file: .*absolute file path"):
        load_config(cfg)


def test_file_gets_the_journal_lines_masked(tmp_path):
    journal = io.StringIO()
    path = tmp_path / "wazod.log"
    configure_logging("info", json=True, stream=journal, file=str(path))
    try:
        log = get_logger("t")
        log.info("connecting", dsn="postgresql://u:pw123@h/db", password="pw456")
        try:
            raise ValueError("boom password=pw789")
        except ValueError:
            log.exception("failed")
    finally:
        configure_logging("info")  # closes the file
    text = path.read_text()
    for secret in ("pw123", "pw456", "pw789"):
        assert secret not in text
    file_lines = text.splitlines()
    journal_lines = journal.getvalue().splitlines()
    assert len(file_lines) == 2
    # the same JSON objects, without the journal's <N> priority prefix
    assert ["<6>" + file_lines[0], "<3>" + file_lines[1]] == journal_lines
    assert json.loads(file_lines[1])["exception"].endswith("ValueError: boom password=********")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_an_unopenable_log_file_stops_the_daemon_with_a_config_error(tmp_path):
    cfg = _config(tmp_path, f"""
node: {{name: t, state_dir: "{tmp_path}/state", uuid_file: /nonexistent}}
ha: {{node_type: disabled, ha_conf: /nonexistent/ha.conf}}
status: {{listen: "127.0.0.1:{free_port()}"}}
logging: {{file: {tmp_path}/missing-dir/wazod.log}}
""")
    done = subprocess.run([sys.executable, "-m", "wazod", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"logging.file: {tmp_path}/missing-dir/wazod.log: cannot be opened" in done.stderr


def _lines(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def _events(path: Path) -> list[str]:
    return [line["event"] for line in _lines(path)] if path.exists() else []


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate not installed (scripts/setup.sh installs it)")
def test_daemon_log_file_rotated_by_logrotate_keeps_being_written(tmp_path):
    logdir = tmp_path / "log"
    logdir.mkdir(mode=0o755)
    log = logdir / "wazod.log"
    cfg = _config(tmp_path, f"""
node: {{name: t, state_dir: "{tmp_path}/state", uuid_file: /nonexistent}}
ha: {{node_type: disabled, ha_conf: /nonexistent/ha.conf}}
status: {{listen: "127.0.0.1:{free_port()}"}}
logging: {{file: {log}}}
""")
    # the shipped rotation rules, for this file instead of /var/log/wazod.log
    rules = SHIPPED_LOGROTATE.read_text()
    assert "/var/log/wazod.log {" in rules
    conf = tmp_path / "logrotate.conf"
    conf.write_text(rules.replace("/var/log/wazod.log {", f"{log} {{"))
    conf.chmod(0o644)

    def rotate() -> None:
        subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "logrotate.state"), str(conf)],
                       check=True, capture_output=True, timeout=60)

    proc = subprocess.Popen([sys.executable, "-m", "wazod", "run", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: "daemon started" in _events(log), timeout=30), proc.stderr.peek() if proc.poll() else ""
        st = log.stat()
        assert stat.S_IMODE(st.st_mode) == 0o640
        if os.geteuid() == 0:
            assert (st.st_uid, st.st_gid) == (0, grp.getgrnam("adm").gr_gid)

        rotate()  # renamed to wazod.log.1 (delaycompress), no new file (nocreate): wazod makes it
        assert "daemon started" in _events(logdir / "wazod.log.1")
        proc.send_signal(signal.SIGHUP)  # something to log
        assert wait_for(lambda: "configuration reloaded" in _events(log), timeout=30)
        assert "configuration reloaded" not in _events(logdir / "wazod.log.1")
        st = log.stat()
        assert stat.S_IMODE(st.st_mode) == 0o640
        if os.geteuid() == 0:
            assert (st.st_uid, st.st_gid) == (0, grp.getgrnam("adm").gr_gid)

        rotate()  # the first archive is compressed now, the daemon moves to a third file
        assert "daemon started" in _events(logdir / "wazod.log.2.gz")
        assert "configuration reloaded" in _events(logdir / "wazod.log.1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0
        assert _events(log)[-1] == "daemon stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_symlink_planted_at_the_log_path_is_not_followed(tmp_path):
    target = tmp_path / "shadow"
    target.write_text("untouched\n")
    (tmp_path / "wazod.log").symlink_to(target)
    with pytest.raises(OSError):
        configure_logging("info", stream=io.StringIO(), file=str(tmp_path / "wazod.log"))
    configure_logging("info")
    assert target.read_text() == "untouched\n"
