"""Issue 15 item 15: a berofos answer wazod cannot read is not trusted, and a password once sent
by digest is never sent in clear text. Real HTTP against the simulator on loopback."""

from __future__ import annotations

import pytest
from harness.berofos import berofos_config_dict, sims, write_bnfos_conf  # noqa: F401 (fixture)

from wazod.berofos import apply_mode
from wazod.berofos.client import BerofosClient, DeviceAuthError, DeviceProtocolError
from wazod.berofos.conf import Device
from wazod.config import Config


async def test_garbage_mode_is_not_read_as_mode_0(tmp_path, sims):  # noqa: F811
    """``4_mode=banana`` was read as 0: a switch to the slave 'verified' garbage."""
    sim = await sims(login="admin:secret")
    sim.behaviour.config_overrides = {"4_mode": "banana"}
    dev = Device("fos1", sim.host, sim.port, user="admin", password="secret")
    async with BerofosClient(dev, timeout=2) as client:
        with pytest.raises(DeviceProtocolError, match="4_mode='banana'"):
            await client.read_state()
    conf = write_bnfos_conf(tmp_path / "bnfos.conf", [("fos1", sim.host, sim.port, "admin:secret")])
    config = Config.model_validate(berofos_config_dict(tmp_path / "state", conf, retries=0))
    (result,) = await apply_mode(config, 0)
    assert not result.ok and "banana" in result.error


async def test_password_never_sent_basic_to_a_device_that_offered_digest(sims):  # noqa: F811
    sim = await sims(login="admin:secret", digest=True)
    dev = Device("fos1", sim.host, sim.port, user="admin", password="secret")
    async with BerofosClient(dev, timeout=2) as client:
        assert (await client.read_state()).mode == 1
        assert client.auth_scheme == "digest"
    sim.digest = False  # something at the device's address now asks for basic
    async with BerofosClient(dev, timeout=2) as client:
        with pytest.raises(DeviceAuthError, match="not sent in clear text"):
            await client.read_state()
    assert [r.auth_scheme for r in sim.requests if r.auth_scheme] == ["digest"]
    assert not any(r.auth_scheme == "basic" for r in sim.requests)


async def test_digest_learnt_by_one_process_is_kept_by_the_next(tmp_path, sims):  # noqa: F811
    """The daemon learnt digest; a later ``wazod berofos status`` (another process) must not send basic."""
    import asyncio
    import json
    import sys

    from harness.berofos import write_config_yml

    from wazod.berofos import read_status

    sim = await sims(login="admin:secret", digest=True)
    conf = write_bnfos_conf(tmp_path / "bnfos.conf", [("fos1", sim.host, sim.port, "admin:secret")])
    cfg_dict = berofos_config_dict(tmp_path / "state", conf, retries=0)
    (status,) = await read_status(Config.model_validate(cfg_dict))
    assert status.ok, status.error
    saved = json.loads((tmp_path / "state" / "berofos-auth.json").read_text())
    assert saved == {f"{sim.host}:{sim.port}": "digest"}
    sim.digest = False
    cfg = write_config_yml(tmp_path / "config.yml", cfg_dict)
    child = await asyncio.create_subprocess_exec(sys.executable, "-m", "wazod", "berofos", "status", "--config",
                                                 str(cfg), stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode != 0 and b"not sent in clear text" in out, out
    assert not any(r.auth_scheme == "basic" for r in sim.requests)
