"""``wazod sync --init``: the key, the other node's host key, the key installed there.

Same outcome as ``xivo-sync -i`` (an RSA key without passphrase, comment
``XiVO HA``, at ``sync.ssh_key``, installed with ``ssh-copy-id``), plus the
step Wazo left to chance: the other node's host key is read once here, shown
as fingerprints, and recorded in wazod's own known_hosts; every later
connection is refused if it changes. Run it on the master (file sync) and
on the slave (copy-back on failback needs the slave's key on the master).
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from wazod import proc
from wazod.errors import WazodError
from wazod.fsutil import atomic_write_text
from wazod.sync.ssh import bracket, known_hosts_path, remote_host, ssh_options


@dataclass
class InitResult:
    ok: bool
    messages: list[str] = field(default_factory=list)
    error: str | None = None
    key: str = ""
    host_key_fingerprints: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


async def _fingerprints(path: Path) -> list[str]:
    done = await proc.run(["ssh-keygen", "-l", "-f", str(path)], timeout=30)
    return [line.strip() for line in done.stdout.decode().splitlines() if line.strip()]


async def _create_key(key: Path, res: InitResult) -> None:
    if key.exists():
        res.messages.append(f"using the existing key {key}")
        pub = Path(f"{key}.pub")
        if not pub.exists():  # ssh-copy-id needs it: derive it from the private key
            done = await proc.run(["ssh-keygen", "-y", "-f", str(key)], timeout=30, check=True)
            atomic_write_text(pub, done.stdout.decode().strip() + " XiVO HA\n", mode=0o644)
            res.messages.append(f"wrote the missing public key {pub}")
        return
    key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    await proc.run(["ssh-keygen", "-q", "-t", "rsa", "-N", "", "-C", "XiVO HA", "-f", str(key)],
                   timeout=120, check=True)
    res.messages.append(f"created the key {key}")


async def _record_host_key(config, host: str, res: InitResult) -> None:
    sc = config.sync
    done = await proc.run(["ssh-keyscan", "-p", str(sc.ssh_port), "-T", str(sc.connect_timeout), "--", host],
                          timeout=sc.connect_timeout + 30)
    lines = sorted({line.strip() for line in done.stdout.decode(errors="replace").splitlines()
                    if line.strip() and not line.startswith("#")})
    if not lines:
        raise WazodError(f"cannot read the host key of {host} port {sc.ssh_port} (is sshd running there, and "
                         f"the port open?): {done.stderr_text(300)}")
    kh = known_hosts_path(config)
    old = kh.read_text() if kh.exists() else ""
    new = "\n".join(lines) + "\n"
    if old.strip() and sorted(old.split("\n")) != sorted(new.split("\n")):
        res.messages.append(f"the host key of {host} differs from the one recorded before; recording the new one")
    atomic_write_text(kh, new, mode=0o600)
    res.host_key_fingerprints = await _fingerprints(kh)
    res.messages.append(f"recorded the host key of {host} in {kh}; check these fingerprints on {host} "
                        "(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub):")
    res.messages.extend(f"  {fp}" for fp in res.host_key_fingerprints)


async def _key_accepted(config, host: str) -> tuple[bool, str]:
    argv = ["ssh", *ssh_options(config), "-l", config.sync.remote_user, "--", host, "true"]
    done = await proc.run(argv, timeout=config.sync.connect_timeout + 30)
    return done.ok, done.stderr_text(300)


async def _copy_id_interactively(config, host: str) -> int:
    """ssh-copy-id on the terminal: ssh asks for the other node's password itself."""
    sc = config.sync
    argv = ["ssh-copy-id", "-i", f"{sc.ssh_key}.pub", "-p", str(sc.ssh_port),
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts_path(config)}",
            "--", f"{sc.remote_user}@{bracket(host)}"]
    child = await asyncio.create_subprocess_exec(*argv)  # inherits the terminal
    try:
        return await child.wait()
    except BaseException:
        if child.returncode is None:
            child.kill()
            await child.wait()
        raise


async def init_keys(config, *, interactive: bool | None = None) -> InitResult:
    """Create, trust, install. ``interactive`` defaults to "stdin is a terminal"."""
    sc = config.sync
    res = InitResult(ok=False, key=sc.ssh_key)
    if interactive is None:
        interactive = sys.stdin.isatty()
    try:
        host = remote_host(config)
        key = Path(sc.ssh_key)
        await _create_key(key, res)
        await _record_host_key(config, host, res)
        accepted, why = await _key_accepted(config, host)
        if not accepted and interactive:
            res.messages.append(f"installing {key}.pub for {sc.remote_user}@{host} (ssh-copy-id asks the password)")
            await _copy_id_interactively(config, host)
            accepted, why = await _key_accepted(config, host)
        if not accepted:
            pub = Path(f"{key}.pub").read_text().strip() if Path(f"{key}.pub").exists() else f"{key}.pub"
            raise WazodError(
                f"{sc.remote_user}@{host} does not accept the key yet ({why or 'refused'})"
                + ("" if interactive else
                   f"; no terminal to ask the password: run `wazod sync --init` in a terminal, or append this "
                   f"line to ~{sc.remote_user}/.ssh/authorized_keys on {host}: {pub}"))
        res.messages.append(f"{sc.remote_user}@{host} accepts the key {key}")
        res.ok = True
    except WazodError as e:
        res.error = str(e)
    except (OSError, proc.CommandFailed, TimeoutError) as e:
        res.error = f"{type(e).__name__}: {e}"
    if res.ok:
        os.chmod(sc.ssh_key, 0o600)
    return res
