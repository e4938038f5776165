"""Parsing of ``status.listen`` (``host:port``, ``[v6]:port``) and the loopback test.

Kept free of other wazod imports: the config section validates with it.
"""

from __future__ import annotations

import ipaddress


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9599"`` -> ``("127.0.0.1", 9599)``; ``"[::1]:9599"`` -> ``("::1", 9599)``."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"an IPv6 address must be written [ADDR]:PORT, got {value!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port must be a number, got {port_text!r} in {value!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"port must be between 1 and 65535, got {port} in {value!r}")
    return host, port


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; names other than localhost count as non-loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
