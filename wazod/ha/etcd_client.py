"""aetcd clients for the etcd arbiter, plaintext or TLS.

Why this module: aetcd (the maintained asyncio etcd v3 client) only opens
plaintext gRPC channels. ``TlsClient`` is aetcd's own ``connect`` with a
secure channel instead (server verified against a CA file, optionally a
client certificate for etcd's ``--client-cert-auth``); everything else is
aetcd's. It relies on aetcd 1.x internals, hence the ``<2`` pin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aetcd
import grpc
from aetcd import rpc, watcher
from aetcd.client import _handle_errors

from wazod.errors import ConfigError

__all__ = ["TlsFiles", "TlsClient", "make_client", "CHANNEL_OPTIONS"]

# gRPC retries a broken connection quickly (etcd members restart within seconds):
# the default backoff grows to 120 s and would keep a member unused long after it is back.
CHANNEL_OPTIONS = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
}


@dataclass(frozen=True)
class TlsFiles:
    """PEM contents (not paths): read once at start so a bad file is a config error, not a failed round."""

    ca: bytes
    cert: bytes | None = None
    key: bytes | None = None

    @classmethod
    def load(cls, ca_file: str, cert_file: str | None = None, key_file: str | None = None) -> TlsFiles:
        """Read the files; ConfigError naming the ``ha.etcd`` key of a missing, unreadable or non-PEM one."""
        if (cert_file is None) != (key_file is None):
            raise ConfigError("ha.etcd: cert_file and key_file go together (the client certificate and its key)")

        def read(key: str, path: str | None) -> bytes | None:
            if path is None:
                return None
            try:
                data = Path(path).read_bytes()
            except OSError as e:
                raise ConfigError(f"ha.etcd.{key}: {path}: {e.strerror}") from None
            if b"-----BEGIN " not in data:
                raise ConfigError(f"ha.etcd.{key}: {path} is not a PEM file")
            return data

        return cls(read("ca_file", ca_file), read("cert_file", cert_file), read("key_file", key_file))

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return f"TlsFiles(ca={len(self.ca)} bytes, client_cert={'yes' if self.cert else 'no'})"


class TlsClient(aetcd.Client):
    """aetcd.Client over a TLS channel."""

    def __init__(self, *args: Any, tls: TlsFiles, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert)

    @_handle_errors
    async def connect(self) -> None:
        """aetcd's connect (1.0), with ``secure_channel``."""
        if self._connected.is_set():
            return
        if self._is_connecting:
            import asyncio
            await asyncio.wait_for(self._connected.wait(), self._connect_wait_timeout)
            return
        try:
            self._is_connecting = True
            target = f"{self._host}:{self._port}"
            self.channel = rpc.secure_channel(target, self._credentials, options=self._options.items())
            if self._username is not None and self._password is not None:
                self.auth_stub = rpc.AuthStub(self.channel)
                request = rpc.AuthenticateRequest(name=self._username, password=self._password)
                resp = await self.auth_stub.Authenticate(request, timeout=self._timeout)
                self.metadata = (("token", resp.token),)
            self.kvstub = rpc.KVStub(self.channel)
            self.clusterstub = rpc.ClusterStub(self.channel)
            self.leasestub = rpc.LeaseStub(self.channel)
            self.maintenancestub = rpc.MaintenanceStub(self.channel)
            self._watcher = watcher.Watcher(rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata)
            self._connected.set()
        finally:
            self._is_connecting = False


def make_client(host: str, port: int, *, timeout: float, username: str | None = None,
                password: str | None = None, tls: TlsFiles | None = None) -> aetcd.Client:
    """One client for one member (IPv6 addresses bracketed for gRPC's target syntax)."""
    kw: dict[str, Any] = dict(
        host=f"[{host}]" if ":" in host else host, port=port, username=username, password=password,
        timeout=timeout, options=dict(CHANNEL_OPTIONS),
    )
    if tls is not None:
        return TlsClient(tls=tls, **kw)
    return aetcd.Client(**kw)
