"""Reading YAML files with the line of every key, so a config or question-set error can name its line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from emkit.errors import EmkitError

Location = tuple[str | int, ...]
"""A key's path in a nested mapping: ("lora", "rank") for lora.rank."""


def parse_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """A YAML file's data and its node tree (whose marks give line numbers for error messages).

    Any syntax problem becomes one :class:`EmkitError` naming the file and line.
    """
    text = path.read_text(encoding="utf-8")
    try:
        return yaml.safe_load(text), yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise EmkitError(f"invalid YAML: {problem}", fix="correct the YAML syntax on that line",
                         where=path, line=mark.line + 1 if mark else None) from None


def read_yaml_mapping(path: Path) -> tuple[dict[str, Any], dict[Location, int]]:
    """Read a YAML mapping and the 1-based line of every key (for error messages)."""
    if not path.is_file():
        raise EmkitError("config file not found", fix="check the path", where=path)
    data, node = parse_yaml(path)
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise EmkitError("a config file must be a YAML mapping of field: value", fix="use `key: value` lines",
                         where=path, line=1)
    lines: dict[Location, int] = {}
    _collect_lines(node, (), lines)
    return data, lines


def _collect_lines(node: yaml.Node | None, prefix: Location, lines: dict[Location, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            location = (*prefix, key_node.value)
            lines[location] = key_node.start_mark.line + 1
            _collect_lines(value_node, location, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            location = (*prefix, index)
            lines[location] = item.start_mark.line + 1
            _collect_lines(item, location, lines)
