"""Lazy re-exports for packages whose submodules pull in heavy libraries.

Why: ``from wazod.berofos import apply_mode`` is the documented contract, but
importing aiohttp (or prometheus_client, asyncpg...) for it costs tens of
milliseconds and megabytes in every process that merely parses ``wazod
--help`` or loads the configuration. PEP 562's module ``__getattr__`` keeps
the names where they were and imports their submodule on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps each name to its submodule (relative)."""

    def __getattr__(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
