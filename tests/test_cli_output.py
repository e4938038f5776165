"""The CLI as a person and a pipe see it: readable at a terminal, quiet when the reader goes away."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from harness.health import make_context, write_config
from harness.util import on_a_terminal


def test_backup_at_a_terminal_is_for_a_person(tmp_path):
    root = tmp_path / "root"
    (root / "etc/asterisk").mkdir(parents=True)
    (root / "etc/asterisk/pjsip.conf").write_text("[general]\n" * 300)
    cfg = write_config(tmp_path, {"backup": {"dir": str(tmp_path / "backups"), "root": str(root)}})
    code, out = on_a_terminal([sys.executable, "-m", "wazod", "--config", str(cfg), "backup", "data"])
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", out)
    assert code == 0, text
    assert "backup: ok in" in text
    for line in text.splitlines():
        assert not line.lstrip().startswith(("<6>", "<5>", "{")), line  # no raw JSON log line
    data_line = next(line for line in text.splitlines() if line.strip().startswith("data:"))
    assert re.search(r"size \d+(\.\d)? (B|KiB|MiB)", data_line), data_line
    assert '"size"' not in text and "sha256 " in data_line and "…" in data_line
    # not a terminal: the same result as plain key: value lines, sizes in bytes (scripts parse them)
    piped = subprocess.run([sys.executable, "-m", "wazod", "--config", str(cfg), "backup", "data"],
                           capture_output=True, text=True, timeout=60)
    assert re.search(r'"size": \d+', piped.stdout)


def test_status_json_into_a_closed_pipe_stops_quietly(tmp_path):
    cfg = write_config(tmp_path, {"ha": {"node_type": "slave"}})
    make_context(cfg).emitter.store.close()
    reader_gone = os.pipe()
    os.close(reader_gone[0])  # like `| head` after its lines: nobody reads any more
    try:
        done = subprocess.run([sys.executable, "-m", "wazod", "--config", str(cfg), "status", "--json"],
                              stdout=reader_gone[1], stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(reader_gone[1])
    assert done.returncode == 141
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.stderr == ""


def test_event_lines_carry_their_zone():
    tz = subprocess.run([sys.executable, "-c", "from wazod.commands.events import render_line;"
                         "print(render_line({'timestamp': '2026-11-27T09:30:00+00:00', 'node': 'n', 'seq': 1,"
                         "'name': 'x', 'data': {}}))"],
                        capture_output=True, text=True, env={**os.environ, "TZ": "Europe/Paris"}, timeout=30)
    assert tz.stdout.startswith("2026-11-27 10:30:00 CET n #1 x"), tz.stdout + tz.stderr
