"""One pydantic model per configuration section, one module each.

Each section belongs to the part of wazod that uses it; the root model in
``wazod.config`` only assembles them. Every field carries a ``description``:
``wazod config defaults`` renders ``etc/wazod/config.yml`` from them, so the
documented defaults cannot drift from the code.
"""

import contextlib
import ipaddress
import re
import types
import typing
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values are validated on assignment.

    Numbers are strict where YAML would slip in something else: ``fall: true``
    is not 1 and ``probe_interval: .inf`` is not a number of seconds.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_true_false_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name)
        if field is not None and _bool_for_number(field.annotation, value):
            raise ValueError("must be a number, not true/false")
        return value


def _types(annotation: Any) -> tuple:
    """The member types of ``X | Y``, ``Optional[X]``, ``Annotated[X, ...]``; else (annotation,)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _types(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return tuple(t for arg in typing.get_args(annotation) for t in _types(arg))
    return (annotation,)


def _bool_for_number(annotation: Any, value: Any) -> bool:
    """``value`` (or an item of it, for a list field) is a bool where only a number is expected."""
    members = _types(annotation)
    if isinstance(value, bool):
        return any(t in (int, float) for t in members) and bool not in members
    if isinstance(value, list):
        for t in members:
            if typing.get_origin(t) is list and typing.get_args(t):
                item = typing.get_args(t)[0]
                return any(_bool_for_number(item, v) for v in value)
    return False


def db_os_user_field():
    """The ``db_os_user`` key of every section whose code connects to PostgreSQL itself (``wazod.pgconnect``)."""
    return Field(
        "postgres",
        min_length=1,
        description="when wazod runs as root, connections over the local socket authenticate as this system user "
        "(peer, like Wazo's sudo -u postgres) and the role defaults to it when the DSN names none; "
        "null: as wazod's own user",
    )


# --- values that reach argv (ssh, ssh-keyscan, rsync, ping) ----------------------------------------
# A value starting with "-" would be read as an option by the program it is given to (ssh-keyscan
# "-f/etc/shadow", ssh "-oProxyCommand=..."): addresses and user names are checked here, at load.

_HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_USER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]{0,31}\$?$")


def check_host_address(value: str) -> str:
    """An IPv4/IPv6 address or an RFC 1123 host name; anything else (options, spaces, ``user@``) is refused."""
    if not isinstance(value, str):
        raise ValueError("must be a string (an IP address or a host name)")
    if value == "":
        return value  # "no other node" (as null, without reading ha.conf)
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(value)
        return value
    name = value[:-1] if value.endswith(".") else value
    if 0 < len(name) <= 253 and all(_HOST_LABEL.match(label) for label in name.split(".")):
        return value
    raise ValueError("must be an IP address or a host name (letters, digits, '-' and '.', not starting with '-')")


def check_user_name(value: str) -> str:
    """A plain system user name (as useradd accepts): no leading '-', no '@', no spaces."""
    if not isinstance(value, str) or not _USER_NAME.match(value):
        raise ValueError("must be a plain user name (letters, digits, '_', '.', '-', not starting with '-')")
    return value


HostAddress = Annotated[str, AfterValidator(check_host_address)]
UserName = Annotated[str, AfterValidator(check_user_name)]


# --- PostgreSQL DSNs: checked at load (exit 2), not at the first connection (exit 1) -----------------
_CONNINFO_PAIR = re.compile(r"\s*[A-Za-z_]+\s*=\s*(?:'(?:[^'\\]|\\.)*'|[^\s']+)")


def check_dsn(value: str) -> str:
    """A libpq DSN: a ``postgresql://`` (or ``postgres://``) URI, or ``key=value`` pairs (values may be quoted).

    Only the shape is checked here (scheme, port, pairs); libpq itself judges the keys.
    ``{remote_address}`` (replication.target_dsn) counts as a host name.
    """
    text = value.strip()
    if not text:
        raise ValueError("must not be empty")
    if "://" in text:
        try:
            parts = urlsplit(text)
            port = parts.port  # ValueError when not a number in 0-65535
        except ValueError as e:
            raise ValueError(f"is not a valid URI DSN ({e})") from None
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("a URI DSN starts with postgresql:// (or postgres://)")
        if port == 0:
            raise ValueError("port 0 is not a port")
        return value
    pos = 0
    while pos < len(text):
        m = _CONNINFO_PAIR.match(text, pos)
        if not m:
            raise ValueError("expected postgresql://... or key=value pairs (quote values with spaces: key='a b')")
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return value


Dsn = Annotated[str, AfterValidator(check_dsn)]
