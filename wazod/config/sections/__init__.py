"""One pydantic model per configuration section, one module each.

Each section belongs to the part of wazod that uses it; the root model in
``wazod.config`` only assembles them. Every field carries a ``description``:
``wazod config defaults`` renders ``etc/wazod/config.yml`` from them, so the
documented defaults cannot drift from the code.
"""

import contextlib
import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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
