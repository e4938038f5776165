"""The demo runs for real (both modes where the machine allows) and the README's commands are CI's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_demo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wazod", "demo", *args], capture_output=True, text=True,
                          timeout=420, cwd=ROOT)


def assert_full_story(out: subprocess.CompletedProcess) -> None:
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    text = out.stdout
    m = re.search(r"steps: (\d+) of (\d+) happened", text)
    assert m and m.group(1) == m.group(2) and int(m.group(2)) >= 14, text[-2000:]
    # the narration is the event stream: each key event of the story is a line
    for name in ("replication_completed", "sync_completed", "backup_completed", "ha_master_down",
                 "ha_takeover_completed", "berofos_mode_changed", "ha_master_up", "ha_failback_completed"):
        assert name in text, name
    for label in ("detection time", "takeover time", "failback time", "rows replicated", "files copied back"):
        line = next(line for line in text.splitlines() if line.startswith(label))
        assert not line.rstrip().endswith(" -"), line
    rows = int(re.search(r"rows replicated\s+(\d+)", text).group(1))
    assert rows > 0
    assert int(re.search(r"files copied back\s+(\d+)", text).group(1)) >= 1
    lab_dir = re.search(r"lab directory: (\S+)", text).group(1)
    assert not Path(lab_dir).exists(), "the demo must clean up its lab"
    survivors = []
    for proc in Path("/proc").iterdir():  # nothing the demo started survives it (the stand-in detaches)
        try:
            if proc.name.isdigit() and lab_dir.encode() in (proc / "cmdline").read_bytes():
                survivors.append((proc.name, (proc / "cmdline").read_bytes().replace(b"\0", b" ")[:200]))
        except OSError:
            continue
    assert not survivors, survivors


@pytest.mark.slow
def test_demo_loopback_mode():
    assert_full_story(run_demo("--loopback"))


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="namespaces need root and nftables")
def test_demo_namespace_mode():
    out = run_demo()
    assert "two network namespaces" in out.stdout
    assert_full_story(out)
    leftover = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "wzdm" not in leftover and "wzds" not in leftover


def test_readme_commands_are_the_ones_ci_and_the_demo_use():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = "./scripts/test.sh"
    demo_cmd = "./scripts/demo.sh"
    first_screen = readme[:3000]
    assert test_cmd in first_screen and demo_cmd in first_screen
    assert test_cmd in ci.split("\n")[-2] or test_cmd in ci
    assert "wazod demo" in (ROOT / "scripts" / "demo.sh").read_text()
    assert ".venv/bin/python -m pytest" in (ROOT / "scripts" / "test.sh").read_text()
