"""Reading /etc/bnfos.conf, the device list that ``bnfos --scan -x`` writes.

The format is the one beroNet's tools and Wazo's ``xivo-berofos`` used::

    [fos1]
    mac = 00:19:32:00:12:1D
    host = 10.34.1.50
    login = admin:secret

Lines starting with ``#`` or ``;`` are comments. A missing file means the site
has no berofos (not an error). Anything malformed is an error naming the file
and the line, because a typo here silently left Wazo's failover without its
ISDN lines: the old script only logged the failed ``bnfos`` call at takeover.
Inline comments are not stripped: a password may contain ``#`` or ``;``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from wazod.errors import ConfigError

SECTION_RE = re.compile(r"^\[(?P<name>[^\]]*)\]\s*$")
DEVICE_NAME_RE = re.compile(r"^fos[1-9][0-9]*$")
MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
KNOWN_KEYS = ("mac", "host", "login")
DEFAULT_PORT = 80


class BnfosConfError(ConfigError):
    """bnfos.conf is malformed; the message is ``<file>:<line>: <problem>``."""


@dataclass(frozen=True)
class Device:
    """One berofos of bnfos.conf. The password never appears in repr() or str()."""

    name: str
    host: str
    port: int = DEFAULT_PORT
    mac: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    line: int = 0  # where its section starts, for messages

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.address}"

    def __str__(self) -> str:
        return f"{self.name} ({self.address})"


def _parse_host(value: str) -> tuple[str, int]:
    """``host``, ``host:port``, an IPv4 or IPv6 address (``[v6]:port`` for a port)."""
    port = DEFAULT_PORT
    host = value
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ValueError(f"host {value!r}: missing ']' after the IPv6 address")
        host, rest = value[1:end], value[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"host {value!r}: expected ':port' after ']'")
            port_text = rest[1:]
        else:
            port_text = None
        ipaddress.IPv6Address(host)
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    elif value.count(":") > 1:
        ipaddress.IPv6Address(value)  # a bare IPv6 address, no port
        port_text = None
    else:
        port_text = None
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"host {value!r}: port must be a number from 1 to 65535")
        port = int(port_text)
    if ":" not in host:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            if not HOSTNAME_RE.match(host) or host.replace(".", "").isdigit():
                raise ValueError(f"host {value!r} is neither an IP address nor a host name") from None
    return host, port


def parse_bnfos_conf(text: str, path: str = "/etc/bnfos.conf") -> list[Device]:
    """The devices of a bnfos.conf text, in file order; BnfosConfError on anything malformed."""
    sections: list[tuple[str, int, dict[str, tuple[str, int]]]] = []
    current: dict[str, tuple[str, int]] | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue

        def fail(problem: str, _lineno: int = lineno) -> BnfosConfError:
            return BnfosConfError(f"{path}:{_lineno}: {problem}")

        m = SECTION_RE.match(line)
        if m:
            name = m["name"].strip()
            if not DEVICE_NAME_RE.match(name):
                raise fail(f"bad section name [{name}]: devices are named fos1, fos2, ... (the bnfos tool needs it)")
            for other, other_line, _ in sections:
                if other == name:
                    raise fail(f"[{name}] is already defined at line {other_line}")
            current = {}
            sections.append((name, lineno, current))
            continue
        if line.startswith("["):
            raise fail(f"malformed section header {line!r}: expected [fosN]")
        key, sep, value = line.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep:
            # the line is not echoed: it may be a password that wrapped onto its own line
            raise fail("expected 'key = value' or a [fosN] section header (no '=' on this line)")
        if current is None:
            raise fail(f"'{key}' is outside any [fosN] section")
        if key not in KNOWN_KEYS:
            raise fail(f"unknown key '{key}' (known: {', '.join(KNOWN_KEYS)})")
        if key in current:
            raise fail(f"'{key}' given twice in this section (first at line {current[key][1]})")
        current[key] = (value, lineno)

    devices = []
    for name, section_line, keys in sections:
        host_value = keys.get("host")
        if host_value is None or not host_value[0]:
            where = host_value[1] if host_value else section_line
            raise BnfosConfError(f"{path}:{where}: [{name}] has no host")
        try:
            host, port = _parse_host(host_value[0])
        except ValueError as e:
            raise BnfosConfError(f"{path}:{host_value[1]}: {e}") from None
        mac = None
        if "mac" in keys:
            mac, mac_line = keys["mac"]
            if mac and not MAC_RE.match(mac):
                raise BnfosConfError(f"{path}:{mac_line}: mac {mac!r} is not a MAC address like 00:19:32:00:12:1D")
            mac = mac or None
        user = password = None
        if "login" in keys:
            login, login_line = keys["login"]
            if ":" not in login:
                # never echo the value: it may be a password typed without its user
                raise BnfosConfError(f"{path}:{login_line}: login must be user:password (no ':' found)")
            user, _, password = login.partition(":")
            if not user:
                raise BnfosConfError(f"{path}:{login_line}: login has an empty user name (expected user:password)")
        devices.append(Device(name=name, host=host, port=port, mac=mac, user=user, password=password,
                              line=section_line))
    return devices


def load_devices(path: str | Path) -> list[Device]:
    """Devices of the bnfos.conf at ``path``; [] when the file does not exist (no berofos on this site)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except UnicodeDecodeError as e:
        raise BnfosConfError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise BnfosConfError(f"{path}: cannot be read: {e.strerror}") from None
    return parse_bnfos_conf(text, str(path))


NOT_CONFIGURED = "no berofos configured"


def configured_devices(settings) -> list[Device]:
    """The devices of ``berofos.config``; [] when this site has no berofos.

    A missing file means "no berofos" only while ``berofos.config`` is the default: a path
    an administrator wrote in a configuration file (pydantic's ``model_fields_set``) that
    does not exist is a mistake (a typo, a file not deployed yet), and an error here, not a
    silent "nothing to switch" at takeover time.
    """
    path = settings.config
    if "config" in settings.model_fields_set and not Path(path).exists():
        raise BnfosConfError(f"berofos.config: {path} does not exist (it is set explicitly; remove the key "
                             "when this site has no berofos)")
    return load_devices(path)


def select_devices(devices: list[Device], names: list[str] | None, path: str) -> list[Device]:
    """The devices named (``-f fos2``), in file order; BnfosConfError for a name not in the file."""
    if not names:
        return devices
    known = {d.name for d in devices}
    unknown = [n for n in names if n not in known]
    if unknown:
        have = ", ".join(sorted(known)) or "none"
        raise BnfosConfError(f"{path}: no device {', '.join(unknown)} (devices: {have})")
    return [d for d in devices if d.name in names]
