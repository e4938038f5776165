"""One pydantic model per configuration section, one module each.

Each section belongs to the part of wazod that uses it; the root model in
``wazod.config`` only assembles them. Every field carries a ``description``:
``wazod config defaults`` renders ``etc/wazod/config.yml`` from them, so the
documented defaults cannot drift from the code.
"""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
