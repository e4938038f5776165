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
