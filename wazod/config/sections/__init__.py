"""One pydantic model per configuration section, one module each.

Each section belongs to the part of wazod that uses it; the root model in
``wazod.config`` only assembles them. Every field carries a ``description``:
``wazod config defaults`` renders ``etc/wazod/config.yml`` from them, so the
documented defaults cannot drift from the code.
"""

from pydantic import BaseModel, ConfigDict, Field


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
