"""The sections a command validated, kept for its next run on the same files: no pydantic, no YAML.

Why: `wazod replicate` run by hand or by a script spent 0.10 s of its 0.18 s start importing pydantic and
PyYAML, building four models and parsing files that had not changed since its previous run. A run whose
files are byte for byte those of an earlier run now reads the values that run validated, and connects.

What makes an entry valid (``key``), all of it compared:
- the text of every file of the hierarchy (config.yml and conf.d's), with their paths, read again each run;
- the validation code: wazod's version, the size and mtime of every file of ``wazod.config`` and of
  pydantic's, pydantic_core's and PyYAML's package files, the Python version, as they were when the
  process first loaded a configuration (``code_fingerprint``);
- when Wazo's ha.conf filled ``ha.node_type`` or ``ha.remote_address``: its path and the sha256 of its
  text, bound to the key, and compared with the file before use.
Only sections whose validation reads nothing but those files are kept (``CACHEABLE``); a command asking for
another validates as before.

Trust: the entry is written by the user running wazod (root on a node) into a directory only that user can
write (``/var/cache/wazod``, 0700; ``$WAZOD_CACHE_DIR`` if set, empty to turn the cache off; a non-root user's
``~/.cache/wazod``), mode 0600 since a DSN may hold a password, atomically. An entry another user owns or
could write, in such a directory, a symlink, a file of another shape, naming a class outside the sections'
package, or whose key differs, is ignored: the files are validated as without a cache, and the entry
replaced.

The values come back as ``CachedModel`` objects: the fields are plain attributes, as on the model. Anything
else asked of one (a property such as ``node.on_wazo``, pydantic's ``model_dump``) is asked of the real
model, built at that moment from the same values (``model_construct``, pydantic imported then).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import json
import os
import stat
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from wazod.secrets import mask

FORMAT = 1
# The sections whose validation depends on the files' text alone (no file existence, no host lookup).
CACHEABLE = frozenset({"node", "ha", "logging", "replication"})
MAX_ENTRY_BYTES = 1 << 22  # the values of a few sections: kilobytes; more is not an entry of ours

Texts = list[tuple[Path, "str | None"]]


def cache_dir() -> Path | None:
    """Where the entries are; None: the cache is off (``WAZOD_CACHE_DIR`` set empty, or no absolute home
    directory for a user other than root). A relative ``WAZOD_CACHE_DIR`` is a ``ConfigError``."""
    chosen = os.environ.get("WAZOD_CACHE_DIR")
    if chosen is not None:
        if chosen and not os.path.isabs(chosen):  # the administrator's setting: said wrong, not ignored
            from wazod.errors import ConfigError

            raise ConfigError(f"$WAZOD_CACHE_DIR: {chosen!r} is not an absolute path (empty: no cache)")
        return Path(chosen) if chosen else None
    if os.geteuid() == 0:
        return Path("/var/cache/wazod")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    # a relative base (no home directory: "~" left as it is) would put entries wherever the command runs
    return Path(base) / "wazod" if os.path.isabs(base) else None


def entry_path(config_path: Path) -> Path | None:
    """The entry of ``config_path`` (one per configuration file, named after its absolute path)."""
    directory = cache_dir()
    if directory is None:
        return None
    name = hashlib.sha256(os.fsencode(os.path.abspath(config_path))).hexdigest()[:32]
    return directory / f"config-{name}.json"


_FINGERPRINT: list | None = None


def code_fingerprint() -> list:
    """What the validation's result depends on besides the files: the code that validates them, as it was
    on disk when this process first loaded a configuration (``load_config`` asks before importing any
    section). Taken once: a daemon that validates again (a reload) after an upgrade replaced the files
    validates with the code it loaded, so its entries carry that code's fingerprint, not the new one."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        _FINGERPRINT = _read_fingerprint()
    return _FINGERPRINT


def _read_fingerprint() -> list:
    parts: list = [FORMAT, sys.hexversion]
    from wazod import __version__

    parts.append(__version__)
    package = Path(__file__).parent
    for directory in (package, package / "sections"):
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name.endswith(".py"):
                    st = entry.stat()
                    parts.append([entry.path, st.st_size, st.st_mtime_ns])
    for module, file in (("pydantic", "version.py"), ("pydantic_core", "__init__.py"), ("yaml", "__init__.py")):
        spec = importlib.machinery.PathFinder.find_spec(module)
        where = spec.submodule_search_locations[0] if spec and spec.submodule_search_locations else None
        try:
            st = os.stat(os.path.join(where, file)) if where else None
        except OSError:
            st = None
        parts.append([module, where, st and st.st_size, st and st.st_mtime_ns])
    return parts


def key_of(config_path: Path, texts: Texts, ha_conf: dict[str, Any] | None) -> str:
    """The sha256 naming what the validation of ``texts`` (the hierarchy of ``config_path``) depends on,
    with the ha.conf it read (path and digest, or None) bound to it."""
    material = [code_fingerprint(), os.path.abspath(config_path), [[str(p), t] for p, t in texts], ha_conf]
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()


def text_digest(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


# --- values out and back in -------------------------------------------------------------------------

class Uncacheable(Exception):
    """A value the entry cannot give back with its exact type (a tuple, a dict, a path...)."""


def encode(value: Any) -> Any:
    """A validated value as JSON: a model is an object naming its class; str, numbers, bools, None and
    lists are themselves; anything else is ``Uncacheable`` (so nothing is kept rather than a changed type)."""
    from pydantic import BaseModel

    if type(value) is str:
        try:
            value.encode("utf-8")  # lone surrogates (YAML's "\\ud83d"): JSON would give back another string
        except UnicodeEncodeError:
            raise Uncacheable("a string that is not Unicode text") from None
        return value
    if value is None or type(value) in (bool, int, float):
        return value
    if type(value) is list:
        return [encode(v) for v in value]
    if isinstance(value, BaseModel):
        cls = type(value)
        return {"model": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {name: encode(getattr(value, name)) for name in cls.model_fields}}
    raise Uncacheable(type(value).__name__)


MODELS_PACKAGE = "wazod.config.sections."


def decode(value: Any) -> Any:
    """What ``encode`` made, back; a model of any other package than the sections' is a ``ValueError``
    (an entry names what to import to build a real model: only ever a configuration section)."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):  # only models are objects (``encode`` keeps no dict)
        class_path, fields = value["model"], value["fields"]
        if not (isinstance(class_path, str) and class_path.startswith(MODELS_PACKAGE) and class_path.count(":") == 1):
            raise ValueError(f"not a configuration model: {class_path!r}")
        if not isinstance(fields, dict):
            raise ValueError("a model's fields are an object")
        return CachedModel(class_path, {k: decode(v) for k, v in fields.items()})
    return value


class CachedModel:
    """A validated model's values read back from the cache: its fields are attributes, read-only.

    Any other attribute (a property, a method, pydantic's API) is that of the real model, built on first
    need from these values without validating them again (they were validated when the entry was made).
    """

    __slots__ = ("_class", "_fields", "_model")

    def __init__(self, class_path: str, fields: dict[str, Any]):
        object.__setattr__(self, "_class", class_path)
        object.__setattr__(self, "_fields", fields)
        object.__setattr__(self, "_model", None)

    def __getattr__(self, name: str) -> Any:
        fields = object.__getattribute__(self, "_fields")
        if name in fields:
            return fields[name]
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._real_model(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{name}: the configuration read from the cache is read-only")

    def _real_model(self) -> Any:
        """The pydantic model these values were read from (built once, pydantic imported then). Named with
        an underscore, as every name of this class: no field of a model can start with one, so none is hidden."""
        if self._model is None:
            from wazod.config import _pydantic_without_plugins

            _pydantic_without_plugins()
            module, qualname = self._class.split(":")
            cls: Any = importlib.import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
            object.__setattr__(self, "_model", cls.model_construct(**{k: _real(v) for k, v in self._fields.items()}))
        return self._model

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CachedModel):
            return self._class == other._class and self._fields == other._fields
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # like a pydantic model: mutable there, so not hashable

    def __repr__(self) -> str:
        name = self._class.rpartition(".")[2].rpartition(":")[2]
        return f"{name}(" + ", ".join(f"{k}={mask(v, k)!r}" for k, v in self._fields.items()) + ")"


def _real(value: Any) -> Any:
    if isinstance(value, CachedModel):
        return value._real_model()
    if isinstance(value, list):
        return [_real(v) for v in value]
    return value


# --- the entry on disk ------------------------------------------------------------------------------

def _owned_and_private(st: os.stat_result, kind: int) -> bool:
    """Of ``kind`` (S_IFDIR / S_IFREG), owned by this process's user, writable by nobody else."""
    return stat.S_IFMT(st.st_mode) == kind and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _trusted_bytes(path: Path) -> bytes | None:
    """The bytes of the entry at ``path`` if this user alone could have written it; else None."""
    try:
        if not _owned_and_private(os.lstat(path.parent), stat.S_IFDIR):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not _owned_and_private(st, stat.S_IFREG) or st.st_size > MAX_ENTRY_BYTES:
            return None
        return os.read(fd, MAX_ENTRY_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)


def read(config_path: Path, texts: Texts, sections: Iterable[str]) -> dict[str, Any] | None:
    """The entry for these files holding ``sections`` (``{"sections": {name: CachedModel}, "ha_conf": ...}``),
    or None: no usable entry (absent, stale, untrusted, unreadable, of another shape: the caller validates
    the files). ``ha_conf``: the ha.conf the validation read (``{"path", "sha256"}``) or None, bound to the
    key; the caller checks that file's text is still the same."""
    path = entry_path(config_path)
    wanted = set(sections)
    if path is None or not wanted <= CACHEABLE:
        return None
    data = _trusted_bytes(path)
    if data is None:
        return None
    try:
        entry = json.loads(data)
        ha_conf = entry["ha_conf"]
        if ha_conf is not None and not (isinstance(ha_conf.get("path"), str)
                                        and isinstance(ha_conf.get("sha256"), (str, type(None)))):
            return None
        if entry["key"] != key_of(config_path, texts, ha_conf) or not wanted <= set(entry["sections"]):
            return None
        kept = {name: decode(entry["sections"][name]) for name in wanted}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not all(isinstance(section, CachedModel) for section in kept.values()):
        return None
    return {"sections": kept, "ha_conf": ha_conf}


def write(config_path: Path, texts: Texts, sections: dict[str, Any], ha_conf: dict[str, Any] | None) -> None:
    """Keep the ``sections`` (validated models) among ``CACHEABLE`` for the next run on the same files.
    Nothing is written when the entry already holds exactly these bytes, and quietly nothing when a value
    cannot be kept exactly or the directory is not this user's alone (the cache only saves time)."""
    path = entry_path(config_path)
    sections = {name: model for name, model in sections.items() if name in CACHEABLE}
    if path is None or not sections:
        return
    try:
        data = json.dumps({"key": key_of(config_path, texts, ha_conf), "ha_conf": ha_conf,
                           "sections": {name: encode(model) for name, model in sections.items()}}).encode()
    except Uncacheable:
        return
    if _trusted_bytes(path) == data:
        return
    from wazod.fsutil import atomic_write_bytes

    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _owned_and_private(os.lstat(path.parent), stat.S_IFDIR):
            return
        atomic_write_bytes(path, data, mode=0o600)
    except OSError:
        return
