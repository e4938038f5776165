"""``wazod config check --changed`` and unknown keys named with their line and a "did you mean"."""

from __future__ import annotations

import json
import subprocess
import sys


def wazod(cfg, *args):
    return subprocess.run([sys.executable, "-m", "wazod", "--config", str(cfg), *args],
                          capture_output=True, text=True, timeout=60)


def write(tmp_path):
    (tmp_path / "conf.d").mkdir()
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"node: {{name: pbx1, state_dir: {tmp_path / 'state'}}}\n"
                   "ha:\n  node_type: disabled\n  remote_address: ''\n"
                   f"  ha_conf: {tmp_path / 'ha.conf'}\n"
                   "backup:\n  keep: 14\n  dsn: \"host=db password='s3 cr3t' dbname=asterisk\"\n"
                   "purge:\n  days_to_keep: 365\n")  # the default, set explicitly: not a change
    (tmp_path / "conf.d" / "10-purge.yml").write_text("# local\npurge:\n  days_to_keep: 90\n")
    return cfg


def test_changed_lists_only_what_differs_with_file_and_line(tmp_path):
    cfg = write(tmp_path)
    done = wazod(cfg, "config", "check", "--changed")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    rows = {line.split()[0]: line for line in lines if line.startswith("  ") and "(default" in line}
    assert set(rows) == {"node.name", "node.state_dir", "ha.node_type", "ha.remote_address", "ha.ha_conf",
                         "backup.keep", "backup.dsn", "purge.days_to_keep"}
    assert rows["purge.days_to_keep"].endswith(f"90  (default 365; {tmp_path / 'conf.d' / '10-purge.yml'}:3)")
    assert rows["backup.keep"].endswith(f"14  (default 7; {cfg}:7)")
    assert "s3 cr3t" not in done.stdout and "cr3t" not in done.stdout
    assert len(lines) < 15
    doc = json.loads(wazod(cfg, "config", "check", "--changed", "--json").stdout)
    keep = next(r for r in doc["changed"] if r["key"] == "backup.keep")
    assert keep == {"key": "backup.keep", "value": 14, "default": 7, "file": str(cfg), "line": 7}


def test_unknown_key_has_its_line_and_a_suggestion(tmp_path):
    cfg = write(tmp_path)
    (tmp_path / "conf.d" / "20-typo.yml").write_text("backup:\n  dir: /srv/backups\n  kepe: 3\n")
    done = wazod(cfg, "config", "check")
    assert done.returncode == 2
    assert f"{tmp_path / 'conf.d' / '20-typo.yml'}:3: backup.kepe: unknown key (did you mean backup.keep?)" \
        in done.stderr
    (tmp_path / "conf.d" / "20-typo.yml").write_text("snmp:\n  traps:\n    - host: nms\n      comunity: x\n")
    done = wazod(cfg, "config", "check")
    assert done.returncode == 2
    assert ":4: snmp.traps.0.comunity: unknown key (did you mean snmp.traps.0.community?)" in done.stderr
    (tmp_path / "conf.d" / "20-typo.yml").write_text("zzz_unrelated: 1\n")
    done = wazod(cfg, "config", "check")
    assert done.returncode == 2 and ":1: zzz_unrelated: unknown key" in done.stderr and "did you mean" not in done.stderr
