"""Where a configuration value comes from, for the administrator: its file and line, what differs from the defaults.

Why a module of its own: the loader reads and validates; this only explains,
after the fact and on the error path or ``wazod config check --changed``, so
it may re-read a file to find a key's line (PyYAML's composer keeps every
node's position; no object is constructed, no alias expanded).
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from wazod.secrets import mask


def key_line(path: Path, key_path: tuple) -> int | None:
    """The 1-based line of ``key_path`` (its deepest key found) in the YAML file ``path``; None if absent."""
    try:
        node = yaml.compose(Path(path).read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    line = None
    for part in key_path:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def known_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    """The keys the model accepts at ``loc`` (the parent of an unknown key); [] when not a model."""
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a list of models: same model
        if model is None or part not in model.model_fields:
            return []
        model = _model_of(model.model_fields[part].annotation)
    return list(model.model_fields) if model is not None else []


def did_you_mean(root: type[BaseModel], loc: tuple) -> str:
    """`` (did you mean keep?)`` for an unknown key close to a known one, else ``""``."""
    return suggestion(known_keys(root, loc[:-1]), loc)


def suggestion(keys: list[str], loc: tuple) -> str:
    """`` (did you mean backup.keep?)`` for the unknown key at ``loc`` close to one of ``keys`` (its siblings)."""
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1, cutoff=0.6)
    return f" (did you mean {'.'.join(map(str, (*loc[:-1], close[0])))}?)" if close else ""


def _leaves(value: Any, prefix: tuple = ()) -> dict[tuple, Any]:
    if isinstance(value, dict) and value:
        out: dict[tuple, Any] = {}
        for k, v in value.items():
            out.update(_leaves(v, (*prefix, k)))
        return out
    return {prefix: value}


def changed(loaded, defaults: dict[str, Any]) -> list[dict[str, Any]]:
    """Every effective value that differs from the defaults, secrets masked, with the file (and line)
    that set it: ``[{key, value, default, file, line}]`` in the models' order."""
    from wazod.config.hierarchy import read_hierarchy

    hierarchy = read_hierarchy(loaded.path)
    effective = _leaves(loaded.config.masked())
    base = _leaves(mask(defaults))
    out = []
    for path, value in effective.items():
        if path in base and base[path] == value:
            continue
        src = hierarchy.source_of(path)
        if src is None and loaded.ha_conf_used and path[:1] == ("ha",) and path[1:] in (("node_type",),
                                                                                       ("remote_address",)):
            src = Path(loaded.config.ha.ha_conf)
        line = key_line(src, path) if src is not None and src.suffix == ".yml" else None
        out.append({"key": ".".join(map(str, path)), "value": value, "default": base.get(path),
                    "file": str(src) if src else None, "line": line})
    return out
