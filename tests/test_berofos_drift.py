"""The daemon's drift check: devices follow the node that holds the services, corrected and reported."""

from __future__ import annotations

import asyncio

from harness import wait_for_async
from harness.berofos import berofos_config_dict, sims, write_bnfos_conf  # noqa: F401 (fixture)

from wazod.berofos.drift import component
from wazod.config import Config, LoadedConfig
from wazod.context import Context
from wazod.events import open_emitter
from wazod.state import StateStore
from wazod.statusboard import StatusBoard


class HaMonitorStandIn:
    """What the HA part publishes in the registry: only ``holds_services`` matters here."""

    def __init__(self, holds: bool):
        self.holds_services = holds


def make_ctx(tmp_path, sim_list, role="master", master_holds=True, **berofos) -> Context:
    """A context; a master's HA monitor says whether it holds the services (without it, a master never drives)."""
    conf = write_bnfos_conf(tmp_path / "bnfos.conf",
                            [(f"fos{i}", s.host, s.port, "admin:secret") for i, s in enumerate(sim_list, 1)])
    config = Config.model_validate(berofos_config_dict(tmp_path / "state", conf, role=role, **berofos))
    state = StateStore(config.state_dir)
    ctx = Context(LoadedConfig(config, tmp_path / "config.yml"), open_emitter(config), state,
                  StatusBoard(state, config.node_name, config.role))
    if role == "master":
        ctx.registry["ha_monitor"] = HaMonitorStandIn(master_holds)
    return ctx


def berofos_events(ctx):
    return [e for e in ctx.emitter.store.after(0) if e["name"].startswith("berofos_")]


async def test_master_corrects_a_flipped_device_and_reports_it(tmp_path, sims):  # noqa: F811
    a = await sims(mode=1)
    b = await sims(mode=0)  # someone flipped it by hand
    ctx = make_ctx(tmp_path, [a, b], role="master")
    drift = component(ctx)

    board = await drift.check_once()

    assert (a.mode, b.mode) == (1, 1)
    assert a.mode_changes() == [] and len(b.mode_changes()) == 1
    (ev,) = berofos_events(ctx)
    assert ev["name"] == "berofos_mode_changed"
    assert (ev["data"]["device"], ev["data"]["previous"], ev["data"]["mode"], ev["data"]["reason"]) == (
        "fos2", 0, 1, "drift")
    assert board["fos2"]["mode"] == 1 and board["fos2"]["ok"]
    assert ctx.status.get("berofos")["fos1"]["mode"] == 1
    assert StateStore(ctx.config.state_dir).read("status")["berofos"]["fos2"]["mode"] == 1
    ctx.emitter.store.close()


async def test_slave_holding_services_corrects_a_rebooted_device(tmp_path, sims):  # noqa: F811
    a = await sims(mode=0)  # after a takeover: lines on the slave
    ctx = make_ctx(tmp_path, [a], role="slave")
    ctx.registry["ha_monitor"] = HaMonitorStandIn(True)
    drift = component(ctx)
    await drift.check_once()
    assert berofos_events(ctx) == []  # nothing to do

    a.reboot()  # power cycle: back to its default mode 1, lines on the (dead) master
    assert a.mode == 1
    await drift.check_once()
    assert a.mode == 0
    (ev,) = berofos_events(ctx)
    assert (ev["name"], ev["data"]["previous"], ev["data"]["mode"]) == ("berofos_mode_changed", 1, 0)
    ctx.emitter.store.close()


async def test_node_not_holding_services_only_reports(tmp_path, sims):  # noqa: F811
    a = await sims(mode=0)
    ctx = make_ctx(tmp_path, [a], role="slave")  # no HA monitor: services not running -> standby
    ctx.status.update(services="stopped")
    drift = component(ctx)
    board = await drift.check_once()
    assert a.mode == 0 and a.mode_changes() == []
    assert board == {"fos1": {"mode": 0, "ok": True, "host": f"{a.host}:{a.port}"}}
    ctx.registry["ha_monitor"] = HaMonitorStandIn(False)  # the HA monitor's word wins over the role
    ctx.status.update(services="running")
    await drift.check_once()
    assert a.mode_changes() == []
    del ctx.registry["ha_monitor"]  # fallback: a slave whose services run holds them
    await drift.check_once()
    assert a.mode == 0 and a.mode_changes() == []  # already 0: right for a slave holding services
    a.mode = 1
    await drift.check_once()
    assert a.mode == 0
    ctx.emitter.store.close()


async def test_master_with_stopped_services_does_not_drive(tmp_path, sims):  # noqa: F811
    a = await sims(mode=0)
    ctx = make_ctx(tmp_path, [a], role="master", master_holds=False)
    ctx.status.update(services="stopped")
    await component(ctx).check_once()
    assert a.mode == 0 and a.mode_changes() == []
    ctx.emitter.store.close()


async def test_no_correction_during_maintenance(tmp_path, sims):  # noqa: F811
    a = await sims(mode=0)
    ctx = make_ctx(tmp_path, [a], role="master")
    ctx.registry["maintenance_active"] = lambda: True
    await component(ctx).check_once()
    assert a.mode == 0 and a.mode_changes() == []
    ctx.emitter.store.close()


async def test_report_only_mode_reports_once(tmp_path, sims):  # noqa: F811
    a = await sims(mode=0)
    ctx = make_ctx(tmp_path, [a], role="master", drift_correct=False)
    drift = component(ctx)
    await drift.check_once()
    await drift.check_once()
    assert a.mode == 0 and a.mode_changes() == []
    (ev,) = berofos_events(ctx)
    assert ev["name"] == "berofos_failed" and ev["data"]["reason"] == "drift"
    assert "needs mode 1; not corrected" in ev["data"]["error"]
    ctx.emitter.store.close()


async def test_unreachable_device_reported_once_then_recovers(tmp_path, sims):  # noqa: F811
    a = await sims(mode=1)
    ctx = make_ctx(tmp_path, [a], role="master", retries=0)
    drift = component(ctx)
    await a.go_down()
    board = await drift.check_once()
    await drift.check_once()
    assert board["fos1"]["ok"] is False and "cannot connect" in board["fos1"]["error"]
    (ev,) = berofos_events(ctx)
    assert ev["name"] == "berofos_failed" and ev["data"]["reason"] == "drift_check"
    await a.come_up(reboot=False)
    board = await drift.check_once()
    assert board["fos1"] == {"mode": 1, "ok": True, "host": f"{a.host}:{a.port}"}
    ctx.emitter.store.close()


async def test_bad_bnfos_conf_shows_on_the_status_board(tmp_path):
    conf = tmp_path / "bnfos.conf"
    conf.write_text("[fos1]\n")
    config = Config.model_validate(berofos_config_dict(tmp_path / "state", conf))
    state = StateStore(config.state_dir)
    ctx = Context(LoadedConfig(config, tmp_path / "c.yml"), open_emitter(config), state,
                  StatusBoard(state, "n", "master"))
    board = await component(ctx).check_once()
    assert board[str(conf)]["error"] == f"{conf}:1: [fos1] has no host"
    ctx.emitter.store.close()


async def test_running_component_corrects_drift_and_stops_cleanly(tmp_path, sims):  # noqa: F811
    a = await sims(mode=1)
    ctx = make_ctx(tmp_path, [a], role="master", drift_interval=0.1)
    drift = component(ctx)
    task = asyncio.create_task(drift.run())
    await wait_for_async(lambda: drift.rounds >= 1, timeout=10)
    a.mode = 0
    await wait_for_async(lambda: a.mode == 1, timeout=10)
    assert any(e["data"].get("reason") == "drift" for e in berofos_events(ctx))
    ctx.stopping.set()
    await asyncio.wait_for(task, 5)
    ctx.emitter.store.close()


async def test_status_board_follows_switches_made_by_ha(tmp_path, sims):  # noqa: F811
    from wazod.berofos import apply_mode

    a = await sims(mode=1)
    ctx = make_ctx(tmp_path, [a], role="slave", drift_interval=30)
    drift = component(ctx)
    task = asyncio.create_task(drift.run())
    await wait_for_async(lambda: drift.rounds >= 1, timeout=10)
    await apply_mode(ctx.config, 0, ctx.emitter, reason="takeover")  # what HA does at takeover
    assert ctx.status.get("berofos")["fos1"]["mode"] == 0
    ctx.stopping.set()
    await asyncio.wait_for(task, 5)
    ctx.emitter.store.close()


async def test_fight_with_another_driver_stops_correcting_and_reports_once(tmp_path, sims):  # noqa: F811
    a = await sims(mode=1)
    ctx = make_ctx(tmp_path, [a], role="master", drift_interval=60)
    drift = component(ctx)
    for _ in range(5):
        a.mode = 0  # the other node (split brain) or a watchdog puts it back each time
        await drift.check_once()
    assert len(a.mode_changes()) == 3  # three corrections, then hands off
    assert a.mode == 0
    fights = [e for e in berofos_events(ctx) if e["data"].get("reason") == "drift_fight"]
    assert len(fights) == 1 and fights[0]["name"] == "berofos_failed"
    assert "another node or the device's watchdog drives it" in fights[0]["data"]["error"]
    ctx.emitter.store.close()


async def test_master_without_monitor_word_never_drives(tmp_path, sims):  # noqa: F811
    """Master back but failback pending: only the slave may drive (no fight over the relays)."""
    a = await sims(mode=0)
    ctx = make_ctx(tmp_path, [a], role="master")
    del ctx.registry["ha_monitor"]
    await component(ctx).check_once()
    assert a.mode == 0 and a.mode_changes() == []
    ctx.emitter.store.close()


async def test_no_correction_while_an_ha_action_holds_the_lock(tmp_path, sims):  # noqa: F811
    """During a failback the slave's services still run; the drift check must not undo the switch."""
    from wazod.locks import OperationLock

    a = await sims(mode=1)  # failback just set it to 1, services not yet stopped
    ctx = make_ctx(tmp_path, [a], role="slave")
    ctx.status.update(services="running")
    with OperationLock(ctx.config.node.state_dir, "ha"):
        await component(ctx).check_once()
    assert a.mode == 1 and a.mode_changes() == []
    ctx.emitter.store.close()


async def test_master_cut_from_its_slave_leaves_the_lines_it_took_and_says_so_once(tmp_path, sims):  # noqa: F811
    """Issue 19: one writer. A master that cannot reach its slave finds the lines switched to the slave:
    it leaves them (``berofos_taken``, once), never flips them back (the relay fight of a cut link)."""
    a = await sims(mode=0)  # the slave took over and switched the lines
    ctx = make_ctx(tmp_path, [a], role="master", master_holds=False)
    ctx.registry["ha_monitor"].lines_taken_watch = True  # the master's HA part: slave down
    drift = component(ctx)
    await drift.check_once()
    await drift.check_once()
    assert a.mode == 0 and a.mode_changes() == []
    names = [e["name"] for e in berofos_events(ctx)]
    assert names == ["berofos_taken"]
    taken = berofos_events(ctx)[0]["data"]
    assert taken["device"] == "fos1" and taken["mode"] == 0
    ctx.emitter.store.close()
