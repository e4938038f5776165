"""The journal tells the HA story at notice (<5>), failures at warning, each line a human message first."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from harness import free_port

from wazod.config import Config
from wazod.events import open_emitter
from wazod.logsetup import configure_logging


@pytest.fixture
def journal(tmp_path):
    buf = io.StringIO()
    configure_logging("info", json=True, stream=buf)
    config = Config.model_validate({"node": {"name": "pbx2", "state_dir": str(tmp_path / "state")},
                                    "ha": {"node_type": "slave", "remote_address": "127.0.0.1",
                                           "ha_conf": str(tmp_path / "ha.conf")}})
    emitter = open_emitter(config)
    yield emitter, buf
    emitter.store.close()
    configure_logging("info")


def lines_of(buf) -> list[tuple[int, dict]]:
    out = []
    for line in buf.getvalue().splitlines():
        assert line.startswith("<") and ">" in line, line
        prio, _, body = line[1:].partition(">")
        out.append((int(prio), json.loads(body)))  # one JSON object per line
    return out


def test_ha_story_at_notice_failures_at_warning_routine_at_info(journal):
    emitter, buf = journal
    story = [("ha_master_down", {"probes": 3}, 4), ("ha_takeover_started", {}, 5),
             ("ha_takeover_completed", {"duration": 2.46}, 5), ("ha_master_up", {}, 5),
             ("ha_failback_completed", {"duration": 1.0}, 5), ("maintenance_started", {"set_by": "alice"}, 5),
             ("maintenance_ended", {}, 5), ("config_reloaded", {"ok": True, "changed": ["purge"]}, 5),
             ("config_reloaded", {"ok": False, "error": "conf.d/20-bad.yml: line 1: bad"}, 4),
             ("backup_completed", {"what": "all", "duration": 12.0}, 6), ("purge_failed", {"error": "x"}, 4)]
    for name, data, _ in story:
        emitter.emit(name, data)
    got = [(prio, body) for prio, body in lines_of(buf) if body.get("component") == "events"]
    assert [(body["name"], prio) for prio, body in got] == [(name, prio) for name, _, prio in story]
    for _, body in got:
        assert list(body)[0] == "event" and body["event"] != "event"  # a human message, first
    messages = [body["event"] for _, body in got]
    assert messages[2] == "takeover completed in 2.5 s: this slave runs the telephony"
    assert messages[8].startswith("configuration reload REFUSED")
    assert messages[9] == "backup (all) completed in 12.0 s"


def test_a_released_master_is_a_warning_with_its_own_message_and_notification(journal):
    """The etcd owner's duty: a master whose own services died gave the key up. The journal says so at
    warning in words, and SNMP managers get a notification of its own, not the catch-all one."""
    from wazod.bus.mib import OTHER_EVENT_NUMBER, notification_oid

    emitter, buf = journal
    emitter.emit("ha_released", {"reason": "services_stopped", "ok": True, "duration": 0.01})
    (prio, body), = [(p, b) for p, b in lines_of(buf) if b.get("component") == "events"]
    assert prio == 4
    assert body["event"].startswith("this master's own services are stopped: ownership given up")
    assert notification_oid("ha_released")[-1] != OTHER_EVENT_NUMBER
    assert notification_oid("ha_released") != notification_oid("ha_fenced")

def test_a_purge_that_cannot_connect_is_one_line_without_traceback(tmp_path):
    cfg = tmp_path / "config.yml"
    cfg.write_text(json.dumps({
        "node": {"name": "pbx1", "state_dir": str(tmp_path / "state")},
        "ha": {"node_type": "disabled", "remote_address": "", "ha_conf": str(tmp_path / "ha.conf")},
        "purge": {"dsn": f"postgresql://postgres@127.0.0.1:{free_port()}/asterisk"}}))
    done = subprocess.run([sys.executable, "-m", "wazod", "--config", str(cfg), "purge"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    journal = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("<")]
    assert "Traceback" not in done.stdout + done.stderr
    assert len(journal) == 1, journal
    assert journal[0].startswith('<4>{"event": "purge failed: cannot connect to the database asterisk on 127.0.0.1:')
