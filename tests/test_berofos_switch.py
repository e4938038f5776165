"""apply_mode / read_status against simulated devices over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import os

import pytest
from harness import wait_for_async
from harness.berofos import berofos_config_dict, sims, write_bnfos_conf  # noqa: F401 (fixture)

from wazod.berofos import apply_mode, read_status
from wazod.berofos.client import BerofosClient, DeviceAuthError
from wazod.berofos.conf import Device
from wazod.berofos.simulator import BerofosSimulator
from wazod.config import Config
from wazod.events import open_emitter
from wazod.locks import OperationLock


def make_config(tmp_path, devices, **berofos) -> Config:
    conf = write_bnfos_conf(tmp_path / "bnfos.conf", devices)
    return Config.model_validate(berofos_config_dict(tmp_path / "state", conf, **berofos))


def entry(name: str, sim: BerofosSimulator, login: str | None = "admin:secret"):
    return (name, sim.host, sim.port, login)


@pytest.fixture
def emitter(tmp_path):
    made = []

    def make(config):
        e = open_emitter(config)
        made.append(e)
        return e

    yield make
    for e in made:
        e.store.close()


def events(emitter_obj, prefix="berofos_"):
    return [e for e in emitter_obj.store.after(0) if e["name"].startswith(prefix)]


async def test_two_devices_switched_together_basic_and_digest(tmp_path, sims, emitter):  # noqa: F811
    a = await sims(login="admin:alpha", digest=True)
    b = await sims(login="admin:bravo")
    config = make_config(tmp_path, [entry("fos1", a, "admin:alpha"), entry("fos2", b, "admin:bravo")])
    em = emitter(config)

    results = await apply_mode(config, 0, em, reason="takeover")

    assert [(r.name, r.ok, r.mode, r.previous, r.changed) for r in results] == [
        ("fos1", True, 0, 1, True), ("fos2", True, 0, 1, True)]
    assert (a.mode, b.mode) == (0, 0)
    # the exact protocol on the wire: cmd=4&mode=0, libbnfos user agent, each device's own auth scheme
    for sim, scheme in ((a, "digest"), (b, "basic")):
        (change,) = sim.mode_changes()
        assert change.query == {"cmd": "4", "mode": "0"}
        assert change.auth_scheme == scheme
        assert {r.user_agent for r in sim.requests} == {"libbnfos"}
        assert sim.requests[-1].path == "/config.txt"  # the read-back
    evs = events(em)
    assert sorted((e["name"], e["data"]["device"], e["data"]["mode"], e["data"]["reason"]) for e in evs) == [
        ("berofos_mode_changed", "fos1", 0, "takeover"), ("berofos_mode_changed", "fos2", 0, "takeover")]

    results = await apply_mode(config, 1, em, reason="failback")
    assert all(r.ok and r.mode == 1 for r in results)
    assert (a.mode, b.mode) == (1, 1)


async def test_device_already_in_mode_is_not_touched(tmp_path, sims):  # noqa: F811
    a = await sims(mode=1)
    config = make_config(tmp_path, [entry("fos1", a)])
    (r,) = await apply_mode(config, 1)
    assert (r.ok, r.mode, r.previous, r.changed) == (True, 1, 1, False)
    assert a.mode_changes() == []


async def test_wrong_password_clear_error_no_retry_no_secret(tmp_path, sims, emitter, capsys):  # noqa: F811
    a = await sims(login="admin:right-one", digest=True)
    b = await sims(login="admin:right-two")
    config = make_config(tmp_path, [entry("fos1", a, "admin:Wr0ngPass1"), entry("fos2", b, "admin:Wr0ngPass2")])
    em = emitter(config)

    results = await apply_mode(config, 0, em)

    for r in results:
        assert not r.ok
        assert "wrong credentials" in r.error and "HTTP 401" in r.error
        assert r.attempts == 1  # a wrong password is not retried
    assert (a.mode, b.mode) == (1, 1)
    (failed_1, failed_2) = sorted(events(em), key=lambda e: e["data"]["device"])
    assert failed_1["name"] == failed_2["name"] == "berofos_failed"
    out = capsys.readouterr()
    blob = out.out + out.err + repr(results) + repr(events(em))
    for secret in ("Wr0ngPass1", "Wr0ngPass2", "right-one", "right-two"):
        assert secret not in blob


async def test_device_needing_a_login_that_bnfos_conf_lacks(tmp_path, sims):  # noqa: F811
    a = await sims(login="admin:secret")
    config = make_config(tmp_path, [entry("fos1", a, None)])
    (r,) = await apply_mode(config, 0)
    assert not r.ok
    assert "bnfos.conf has none for [fos1]" in r.error


async def test_one_device_down_other_switches_partial_result_retried(tmp_path, sims, emitter):  # noqa: F811
    a = await sims()
    b = await sims()
    await b.go_down()
    config = make_config(tmp_path, [entry("fos1", a), entry("fos2", b)], retries=2)
    em = emitter(config)

    r1, r2 = await apply_mode(config, 0, em)

    assert (r1.ok, r1.mode, a.mode) == (True, 0, 0)
    assert not r2.ok and r2.mode is None
    assert "cannot connect" in r2.error
    assert r2.attempts == 3  # first try + 2 retries
    names = sorted((e["name"], e["data"]["device"]) for e in events(em))
    assert names == [("berofos_failed", "fos2"), ("berofos_mode_changed", "fos1")]
    assert events(em, "berofos_failed")[0]["data"]["attempts"] == 3


async def test_device_coming_back_during_retries_is_switched(tmp_path, sims):  # noqa: F811
    a = await sims()
    config = make_config(tmp_path, [entry("fos1", a)], retries=8, retry_delay=0.1, retry_delay_max=0.3)
    await a.down_for(0.4)
    (r,) = await apply_mode(config, 0)
    assert r.ok and r.attempts > 1
    assert a.mode == 0


async def test_flaky_device_500_and_dropped_connections_are_retried(tmp_path, sims):  # noqa: F811
    a = await sims()
    b = await sims()
    a.behaviour.fail_next = 2
    b.behaviour.drop_next = 2
    config = make_config(tmp_path, [entry("fos1", a), entry("fos2", b)], retries=3)
    results = await apply_mode(config, 0)
    assert [(r.ok, r.mode) for r in results] == [(True, 0), (True, 0)]
    assert results[0].attempts == 3  # two HTTP 500 answers, then success
    assert results[1].attempts >= 2  # aiohttp may itself resend a GET once after a dropped connection
    assert (a.mode, b.mode) == (0, 0)


async def test_device_answering_200_without_switching_is_caught_by_read_back(tmp_path, sims, emitter):  # noqa: F811
    a = await sims(mode=1)
    a.behaviour.ignore_mode = True
    config = make_config(tmp_path, [entry("fos1", a)], retries=1)
    em = emitter(config)

    (r,) = await apply_mode(config, 0, em)

    assert not r.ok
    assert r.mode == 1  # what the device really reports
    assert "accepted mode=0 (HTTP 200) but still reads back mode 1" in r.error
    assert len(a.mode_changes()) == 2  # the device did say 200, twice
    (ev,) = events(em)
    assert ev["name"] == "berofos_failed" and ev["data"]["mode"] == 1


async def test_read_back_catches_a_device_stuck_in_mode_0_on_failback(tmp_path, sims, emitter):  # noqa: F811
    """The same read-back in the other direction: lines left on the slave after a failback to mode 1."""
    a = await sims(mode=0)
    a.behaviour.ignore_mode = True
    config = make_config(tmp_path, [entry("fos1", a)], retries=0)
    em = emitter(config)

    (r,) = await apply_mode(config, 1, em)

    assert not r.ok and r.mode == 0
    assert "accepted mode=1 (HTTP 200) but still reads back mode 0" in r.error
    (ev,) = events(em)
    assert ev["name"] == "berofos_failed" and ev["data"]["mode"] == 0


async def test_failback_to_mode_1_is_a_change_and_told(tmp_path, sims, emitter):  # noqa: F811
    a = await sims(mode=0)
    config = make_config(tmp_path, [entry("fos1", a)])
    em = emitter(config)

    (r,) = await apply_mode(config, 1, em)

    assert (r.ok, r.mode, r.previous, r.changed) == (True, 1, 0, True)
    assert a.mode == 1
    (ev,) = events(em)
    assert ev["name"] == "berofos_mode_changed" and ev["data"]["mode"] == 1


async def test_slow_device_times_out(tmp_path, sims):  # noqa: F811
    a = await sims()
    a.behaviour.delay = 1.0
    config = make_config(tmp_path, [entry("fos1", a)], timeout=0.2, retries=0)
    (r,) = await apply_mode(config, 0)
    assert not r.ok and "no answer to reading config.txt within 0.2 s" in r.error


async def test_switch_deadline_bounds_the_retries(tmp_path, sims):  # noqa: F811
    a = await sims()
    a.behaviour.delay = 0.3
    config = make_config(tmp_path, [entry("fos1", a)], timeout=0.1, retries=50, retry_delay=0.05,
                         switch_timeout=0.5)
    (r,) = await apply_mode(config, 0)
    assert not r.ok and "not done within 0.5 s" in r.error and "last error" in r.error


async def test_digest_without_qop(tmp_path, sims):  # noqa: F811
    a = await sims(digest=True, qop=False)
    config = make_config(tmp_path, [entry("fos1", a)])
    (r,) = await apply_mode(config, 0)
    assert r.ok and a.mode == 0
    assert a.mode_changes()[0].auth_scheme == "digest"


async def test_device_without_password(tmp_path, sims):  # noqa: F811
    a = await sims(login=None)
    config = make_config(tmp_path, [entry("fos1", a, None)])
    (r,) = await apply_mode(config, 0)
    assert r.ok and a.mode == 0
    assert {req.auth_scheme for req in a.requests} == {None}


async def test_bnfos_conf_without_device_means_nothing_to_do(tmp_path, emitter):
    (tmp_path / "empty.conf").write_text("# no berofos on this site\n")
    config = Config.model_validate(berofos_config_dict(tmp_path / "state", tmp_path / "empty.conf"))
    em = emitter(config)
    assert await apply_mode(config, 0, em) == []
    assert events(em) == []


async def test_explicit_bnfos_conf_that_is_missing_fails_the_switch(tmp_path, emitter):
    config = Config.model_validate(berofos_config_dict(tmp_path / "state", tmp_path / "absent.conf"))
    em = emitter(config)
    (r,) = await apply_mode(config, 0, em)
    assert not r.ok and f"berofos.config: {tmp_path / 'absent.conf'} does not exist" in r.error
    assert [e["name"] for e in events(em)] == ["berofos_failed"]


async def test_bad_bnfos_conf_is_a_failed_result_not_an_exception(tmp_path, emitter):
    conf = tmp_path / "bnfos.conf"
    conf.write_text("[fos1]\nhots = 10.0.0.1\n")
    config = Config.model_validate(berofos_config_dict(tmp_path / "state", conf))
    em = emitter(config)
    (r,) = await apply_mode(config, 0, em)
    assert not r.ok and r.error.startswith(f"{conf}:2: unknown key 'hots'")
    assert [e["name"] for e in events(em)] == ["berofos_failed"]


async def test_only_named_devices_are_switched(tmp_path, sims):  # noqa: F811
    a = await sims()
    b = await sims()
    config = make_config(tmp_path, [entry("fos1", a), entry("fos2", b)])
    (r,) = await apply_mode(config, 0, devices=["fos2"])
    assert r.name == "fos2" and (a.mode, b.mode) == (1, 0)


async def test_waits_for_the_lock_then_reports_it_held(tmp_path, sims):  # noqa: F811
    a = await sims()
    config = make_config(tmp_path, [entry("fos1", a)], lock_wait=0.3)
    with OperationLock(config.state_dir, "berofos"):
        (r,) = await apply_mode(config, 0)
    assert not r.ok and "holds the lock" in r.error
    assert a.mode == 1 and a.mode_changes() == []
    # released by its holder: the next switch goes through
    (r,) = await apply_mode(config, 0)
    assert r.ok and a.mode == 0


def _flock_held(path) -> bool:
    """Whether the kernel has a flock on ``path`` (read from /proc/locks: looking never takes it)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with open("/proc/locks") as f:
        return any(line.split()[1] == "FLOCK" and line.split()[5] == dev for line in f)


async def test_cancel_mid_switch_releases_the_lock(tmp_path, sims):  # noqa: F811
    a = await sims()
    a.behaviour.delay = 5.0  # the device answers late: the switch is in flight for seconds
    config = make_config(tmp_path, [entry("fos1", a)], timeout=10, switch_timeout=20)
    lock_path = OperationLock(config.state_dir, "berofos").path
    task = asyncio.create_task(apply_mode(config, 0))
    await wait_for_async(lambda: _flock_held(lock_path), timeout=10, interval=0.01)
    assert not task.done()  # held by the switch in flight
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not _flock_held(lock_path)
    lock = OperationLock(config.state_dir, "berofos")
    lock.acquire()  # not left held
    lock.release()


async def test_read_status_reports_setup_and_warns(tmp_path, sims):  # noqa: F811
    good = await sims(digest=True)
    odd = await sims()
    odd.state.update({"6_wen": 1, "2_wen": 1, "1_sz": 1, "1_rm": 0})
    down = await sims()
    await down.go_down()
    config = make_config(tmp_path, [entry("fos1", good), entry("fos2", odd), entry("fos3", down)], retries=0)

    s1, s2, s3 = await read_status(config)

    assert (s1.ok, s1.mode, s1.modedef, s1.wdog, s1.wdogdef, s1.scenario, s1.warnings) == (
        True, 1, 1, 0, 0, 0, [])
    assert s1.lines_on == "master"
    assert (s2.wdog, s2.wdogdef, s2.scenario, s2.modedef) == (1, 1, 1, 0)
    assert len(s2.warnings) == 4
    assert any("wdog is 1, Wazo's setup expects 0" in w and "bnfos --set wdog=0 -f fos2" in w for w in s2.warnings)
    assert any("modedef is 0" in w for w in s2.warnings)
    assert not s3.ok and "cannot connect" in s3.error
    assert good.mode_changes() == [] and odd.mode_changes() == []


async def test_config_txt_without_magic_line_is_rejected(tmp_path, sims):  # noqa: F811
    a = await sims()
    a.render_config_txt = lambda: "4_mode=1\n"  # a web server that is not a berofos
    dev = Device("fos1", a.host, a.port, user="admin", password="secret")
    async with BerofosClient(dev, timeout=1) as client:
        with pytest.raises(Exception, match="no 'bnfos_confmap_magic=' line"):
            await client.read_state()


async def test_checked_values_read_as_on(tmp_path, sims):  # noqa: F811
    a = await sims(login="admin:secret")
    a.state["1_rm"] = 1  # rendered "checked" by the device's template
    assert "1_rm=checked" in a.render_config_txt()
    dev = Device("fos1", a.host, a.port, user="admin", password="secret")
    async with BerofosClient(dev, timeout=1) as client:
        state = await client.read_state()
        assert state.modedef == 1 and state.confmap_version == "0.1"
        assert client.auth_scheme == "basic"
        await client.set("modedef", 0)
        assert (await client.read_state()).modedef == 0
    bad = Device("fos1", a.host, a.port, user="admin", password="nope")
    async with BerofosClient(bad, timeout=1) as client:
        with pytest.raises(DeviceAuthError):
            await client.read_state()
