"""The effective configuration of wazod: Wazo's file hierarchy, validated by pydantic.

``load_config(path)`` is the one entry point: it reads config.yml and conf.d,
fills ``ha.node_type`` / ``ha.remote_address`` from Wazo's ha.conf when the
files leave them out, validates everything, and raises ``ConfigError`` with
the file, line (for YAML errors) and key path of the first problem.
"""

from __future__ import annotations

import importlib
import json
import os
import reprlib
import socket
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wazod import DEFAULT_CONFIG_PATH  # noqa: E402  (re-exported)
from wazod.config import cache
from wazod.config.files import read_config_text, read_layer_texts
from wazod.errors import ConfigError
from wazod.secrets import mask

if TYPE_CHECKING:
    from collections.abc import Callable

    from wazod.config.hierarchy import Hierarchy
    from wazod.config.model import Config

# Nothing here imports pydantic: ``Config`` (every section) is built on first use (``wazod.config.model``),
# and a command that reads only a few sections validates those alone (``load_config(sections=...)``), or
# takes them from the cache of its previous run on the same files (``wazod.config.cache``: no YAML either).

# The top-level keys, in the order of ``Config``'s fields, and the model of each.
SECTIONS: dict[str, str] = {
    "node": "node:NodeSection",
    "ha": "ha:HaSection",
    "replication": "replication:ReplicationSection",
    "sync": "sync:SyncSection",
    "backup": "backup:BackupSection",
    "purge": "purge:PurgeSection",
    "berofos": "berofos:BerofosSection",
    "bus": "bus:BusSection",
    "snmp": "snmp:SnmpSection",
    "status": "status:StatusSection",
    "health": "health:HealthSection",
    "maintenance": "maintenance:MaintenanceSection",
    "logging": "logging:LoggingSection",
}
# What every command reads: where the state is, the node's role, the log level.
ALWAYS_READ = ("node", "ha", "logging")


def __getattr__(name: str) -> Any:
    if name == "Config":
        return _config_model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _pydantic_without_plugins() -> None:
    """pydantic without its plugin loader: wazod's models use no pydantic plugin.

    When it builds its first model pydantic imports ``importlib.metadata`` and scans the entry points of
    every installed distribution for plugins: 10 to 15 ms of a command's start, to find none in wazod's
    virtualenv. Its loader (``pydantic.plugin._loader``, whose one function pydantic calls is
    ``get_plugins()``) is answered here with "no plugin" instead. Any other name asked of it loads the
    real loader, so a pydantic that needs more of it still works, only without the saving.
    """
    if _PYDANTIC_LOADER not in sys.modules:
        sys.modules[_PYDANTIC_LOADER] = _NoPydanticPlugins(_PYDANTIC_LOADER)


_PYDANTIC_LOADER = "pydantic.plugin._loader"


class _NoPydanticPlugins(types.ModuleType):
    @staticmethod
    def get_plugins() -> tuple:
        return ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # what the import system asks of any module (``__path__``...): not a use
            raise AttributeError(name)
        if sys.modules.get(_PYDANTIC_LOADER) is self:
            del sys.modules[_PYDANTIC_LOADER]
        return getattr(importlib.import_module(_PYDANTIC_LOADER), name)


def _config_model() -> type[Config]:
    _pydantic_without_plugins()
    from wazod.config.model import Config

    return Config


def section_model(name: str) -> Any:
    """The pydantic model of top-level section ``name`` (its module imported, so built, on first use)."""
    _pydantic_without_plugins()
    module, cls = SECTIONS[name].split(":")
    return getattr(importlib.import_module(f"wazod.config.sections.{module}"), cls)


class ConfigViews:
    """Values derived from the sections, the same on the whole ``Config`` and on ``SectionsConfig``."""

    # (no annotations here: pydantic would read them as fields of Config)

    @property
    def node_name(self) -> str:
        return self.node.name or socket.gethostname()

    @property
    def role(self) -> str:
        return self.ha.node_type or "disabled"

    @property
    def state_dir(self) -> Path:
        return Path(self.node.state_dir)

    @property
    def log_file(self) -> str | None:
        """The daemon's log file (``logging.file`` with ``auto`` resolved on this host), or None."""
        return self.logging.resolved_file(self.node.on_wazo)


class SectionsConfig(ConfigViews):
    """The sections a command reads, validated at load like the whole ``Config`` (or read from the cache
    of an earlier validation of the same files); any other section is validated when first read (a
    ``ConfigError`` naming its key if it is wrong). ``source``: the merged files and their hierarchy."""

    def __init__(self, sections: dict[str, Any], source: Callable[[], tuple[dict[str, Any], Hierarchy]]):
        self._source = source
        self.__dict__.update(sections)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in SECTIONS:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        raw, hierarchy = self._source()
        value = _validate_sections(raw, (name,), hierarchy)[name]
        self.__dict__[name] = value
        return value

@dataclass
class LoadedConfig:
    """A validated config plus where it came from (for reload and ha.conf watching)."""

    config: Config
    path: Path
    files: list[Path] = field(default_factory=list)
    ha_conf_used: bool = False
    ha_conf_mtime: float | None = None
    must_exist: bool = False


def read_ha_conf(path: str | os.PathLike) -> dict[str, Any]:
    """Wazo's /etc/xivo/ha.conf (JSON). Missing: {}. Unreadable JSON: a ConfigError naming it."""
    return parse_ha_conf(path, read_config_text(Path(path)))


def parse_ha_conf(path: str | os.PathLike, text: str | None) -> dict[str, Any]:
    """The ``text`` of ha.conf at ``path`` (None: no such file) read as ``read_ha_conf`` reads it."""
    if text is None:
        return {}
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object with node_type and remote_address")
    return data


def shorten(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error message never echoes a huge value whole."""
    r = reprlib.Repr()
    r.maxstring = r.maxother = limit
    r.maxlist = r.maxdict = 6
    r.maxlevel = 3
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _format_errors(errors: Iterable[dict[str, Any]], hierarchy: Hierarchy) -> str:
    """pydantic's errors (``loc`` from the top level) as ``file:line: key.path: message`` lines."""
    from wazod.config.explain import key_line, suggestion

    lines = []
    for e in errors:
        loc = tuple(e["loc"])
        key_path = ".".join(str(p) for p in loc)
        src = hierarchy.source_of(loc)
        if src is None and e["type"] == "extra_forbidden":
            src = hierarchy.source_of(loc[:-1])
        where = str(src) if src else "(defaults)"
        if src is not None:
            line = key_line(src, loc)
            where += f":{line}" if line else ""
        if e["type"] == "extra_forbidden":
            msg = "unknown key" + suggestion(_known_keys(loc[:-1]), loc)
        else:
            value = e.get("input")
            shown = mask(value, str(loc[-1])) if loc else value
            msg = f"{e['msg']} (got {shorten(shown)})"
        lines.append(f"{where}: {key_path}: {msg}")
    return "\n".join(lines)


def _known_keys(loc: tuple) -> list[str]:
    """The keys accepted at ``loc`` (the parent of an unknown key), from the models of the sections only."""
    if not loc:
        return list(SECTIONS)
    from wazod.config.explain import known_keys

    return known_keys(section_model(loc[0]), loc[1:]) if loc[0] in SECTIONS else []


def _validate_sections(raw: dict[str, Any], names: Iterable[str], hierarchy: Hierarchy) -> dict[str, Any]:
    """Sections ``names`` of the merged ``raw`` validated as ``Config`` would validate them (same errors,
    same order), plus the top-level keys: an unknown one is an error whatever the command."""
    from pydantic import ValidationError

    wanted = set(names)
    if wanted - set(SECTIONS):  # a caller's mistake, not the administrator's
        raise ValueError(f"no such configuration section: {sorted(wanted - set(SECTIONS))}")
    names = [n for n in SECTIONS if n in wanted]  # Config's order: its errors come in that order
    errors: list[dict[str, Any]] = []
    out: dict[str, Any] = {}
    for name in names:
        model = section_model(name)
        try:
            out[name] = model.model_validate(raw[name]) if name in raw else model()
        except ValidationError as e:
            errors += [{**err, "loc": (name, *err["loc"])} for err in e.errors()]
    errors += [{"type": "extra_forbidden", "loc": (key,), "input": raw[key]} for key in raw if key not in SECTIONS]
    if errors:
        raise ConfigError(_format_errors(errors, hierarchy))
    return out


def load_config(path: str | os.PathLike | None = None, *, must_exist: bool = False,
                sections: Iterable[str] | None = None) -> LoadedConfig:
    """Read, merge and validate. ``must_exist``: the file was named explicitly (``--config``,
    ``$WAZOD_CONFIG``), so its absence is an error rather than a run on the built-in defaults.

    ``sections``: validate only those (and node, ha, logging, and the top-level keys) and return a
    ``SectionsConfig``: what a command that reads a few settings uses, without building every model;
    the values are kept for the next run on the same files (``wazod.config.cache``), which reads them
    back instead of validating again. None: the whole ``Config``, always validated (and kept too)."""
    path = Path(path or os.environ.get("WAZOD_CONFIG") or DEFAULT_CONFIG_PATH)
    if must_exist and not path.exists():
        raise ConfigError(f"{path}: no such configuration file (named by --config or $WAZOD_CONFIG)")
    cache.code_fingerprint()  # the validation code this process loads from now on, taken before it does
    texts = read_layer_texts(path)
    files = [p for p, _ in texts]
    names = None if sections is None else (*ALWAYS_READ, *sections)
    if names is not None:
        cached = _from_cache(path, texts, names)
        if cached is not None:
            cached.must_exist = must_exist
            return cached
    from pydantic import ValidationError

    from wazod.config.hierarchy import read_hierarchy

    hierarchy = read_hierarchy(path, texts)
    raw = hierarchy.merged()
    config: Any
    if names is None:
        try:
            config = _config_model().model_validate(raw)
        except ValidationError as e:
            raise ConfigError(_format_errors(e.errors(), hierarchy)) from None
    else:
        config = SectionsConfig(_validate_sections(raw, names, hierarchy), lambda: (raw, hierarchy))
    loaded = LoadedConfig(config=config, path=path, files=files, must_exist=must_exist)
    ha = config.ha
    ha_conf_kept = None
    if ha.node_type is None or ha.remote_address is None:
        loaded.ha_conf_used = True
        loaded.ha_conf_mtime = _mtime(ha.ha_conf)
        text = read_config_text(Path(ha.ha_conf))
        ha_conf = parse_ha_conf(ha.ha_conf, text)
        for key, value in (("node_type", ha_conf.get("node_type") or "disabled"),
                           ("remote_address", ha_conf.get("remote_address") or None)):
            if getattr(ha, key) is not None:
                continue
            try:
                setattr(ha, key, value)
            except ValidationError as e:
                raise ConfigError(f"{ha.ha_conf}: {key}: {e.errors()[0]['msg']} (got {shorten(value)})") from None
        ha_conf_kept = {"path": ha.ha_conf, "sha256": cache.text_digest(text)}
    # kept for the next command on these files; the whole Config (``run``, ``config check``, ``status``...)
    # leaves its sections too, so a `wazod replicate` after a `config check` or a reload needs no validation
    kept = names if names is not None else SECTIONS
    cache.write(path, texts, {n: getattr(config, n) for n in kept}, ha_conf_kept)
    return loaded


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _from_cache(path: Path, texts: list, names: tuple[str, ...]) -> LoadedConfig | None:
    """The sections ``names`` as the last validation of these same files left them, or None."""
    entry = cache.read(path, texts, names)
    if entry is None:
        return None

    def source() -> tuple[dict[str, Any], Hierarchy]:  # a section not kept, read after all: parse the files
        from wazod.config.hierarchy import read_hierarchy

        hierarchy = read_hierarchy(path, texts)
        return hierarchy.merged(), hierarchy

    loaded = LoadedConfig(config=SectionsConfig(entry["sections"], source), path=path, files=[p for p, _ in texts])
    ha_conf = entry["ha_conf"]
    if ha_conf is not None:  # it filled node_type or remote_address: still the same text?
        loaded.ha_conf_used = True
        loaded.ha_conf_mtime = _mtime(ha_conf["path"])
        try:
            text = read_config_text(Path(ha_conf["path"]))
        except ConfigError:
            return None  # validated without the cache, which reports it
        if cache.text_digest(text) != ha_conf["sha256"]:
            return None
    return loaded


__all__ = ["Config", "LoadedConfig", "SectionsConfig", "load_config", "read_ha_conf", "DEFAULT_CONFIG_PATH"]
