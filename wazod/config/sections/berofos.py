from __future__ import annotations

from pydantic import Field

from . import Section


class BerofosSection(Section):
    config: str = Field("/etc/bnfos.conf", description="beroNet berofos devices; no file: no berofos")
