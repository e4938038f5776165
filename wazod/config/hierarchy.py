"""Reading config.yml and conf.d/*.yml with the Wazo daemons' rules.

The rules, as xivo-lib-python applies them (see shared/reference):
- conf.d files are read in code-point order of their names; only names ending
  in ``.yml`` and not starting with ``.`` count; no recursion;
- the *first* conf.d file defining a key wins, any conf.d file beats config.yml;
- dicts are deep-merged, lists and scalars replaced whole; an explicit null in
  a higher-priority file masks a dict below it;
- missing files and directories are fine.

Unlike Wazo, a file that is not valid YAML or whose top level is not a mapping
is an error here (Wazo silently skips the first in conf.d and crashes on the
second), and the error names the file and the line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wazod.config.files import read_config_text, read_layer_texts
from wazod.errors import ConfigError


@dataclass
class Layer:
    """One file's content, with its path kept for error messages."""

    path: Path
    data: dict[str, Any]


@dataclass
class Hierarchy:
    """The layers in priority order (highest first) and their merge."""

    layers: list[Layer] = field(default_factory=list)

    def merged(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for layer in self.layers:
            _fill_missing(result, layer.data)
        return result

    def source_of(self, key_path: tuple) -> Path | None:
        """The file whose value for ``key_path`` is the effective one (highest priority defining it)."""
        for layer in self.layers:
            node: Any = layer.data
            found = True
            for part in key_path:
                if isinstance(node, dict) and part in node:
                    node = node[part]
                elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                    node = node[part]
                else:
                    found = False
                    break
            if found:
                return layer.path
            # a shorter prefix defined here (e.g. a scalar masking a dict) also makes this file the source
            node = layer.data
            for part in key_path:
                if not isinstance(node, dict) or part not in node:
                    break
                node = node[part]
                if not isinstance(node, dict):
                    return layer.path
        return None


def _fill_missing(target: dict, source: dict) -> None:
    """Merge ``source`` (lower priority) into ``target`` (higher priority) in place."""
    for key, value in source.items():
        if key not in target:
            target[key] = _copy(value)
        elif isinstance(target[key], dict) and isinstance(value, dict):
            _fill_missing(target[key], value)
        # else: the higher-priority value (scalar, list, null or dict over non-dict) stays


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return list(value)
    return value


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases and without duplicate keys.

    An alias lets a few hundred bytes expand into gigabytes (the "billion
    laughs"); no wazod setting needs one. A key given twice in one mapping is
    kept silently by PyYAML (the last one wins), which hides typos.
    """

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not allowed in the configuration", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {str(key)[:60]!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_file(path: Path) -> dict[str, Any]:
    """Parse one YAML file; empty (or comment-only) means {}; errors name the file and line."""
    return parse_text(path, read_config_text(path))


def parse_text(path: Path, text: str | None) -> dict[str, Any]:
    """Parse the YAML ``text`` of the file at ``path`` (None: the file does not exist, so {})."""
    if text is None:
        return {}
    try:
        data = yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not a {type(data).__name__}")
    return data


def read_hierarchy(config_file: str | os.PathLike,
                   texts: list[tuple[Path, str | None]] | None = None) -> Hierarchy:
    """The parsed layers of ``config_file``'s hierarchy; ``texts``: those ``read_layer_texts`` returned."""
    texts = read_layer_texts(config_file) if texts is None else texts
    return Hierarchy([Layer(p, parse_text(p, text)) for p, text in texts])
