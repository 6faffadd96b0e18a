"""Typed stage configs: a YAML file plus ``key.sub=value`` overrides from the CLI.

Every stage (train, sample, demo, ...) has one pydantic config class derived from
:class:`StageConfig`. A config is the only way a stage's behaviour changes, so a run folder
that stores its config (and its hash) is enough to reproduce it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from emkit.errors import EmkitError

Location = tuple[str | int, ...]
RECIPE_PREFIX = "recipe:"
"""A config argument of the form ``recipe:NAME`` names a shipped recipe (:mod:`emkit.recipes`), not a file."""


class StageConfig(BaseModel):
    """Base class of every stage config: strict keys, field docstrings as descriptions."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, protected_namespaces=())

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: Iterable[str] = (),
             defaults: dict[str, Any] | None = None) -> Self:
        """Build the config from ``defaults``, then the YAML file at ``path``, then ``overrides``.

        ``path`` may be ``recipe:NAME``: a shipped recipe of this config's stage. Any problem becomes
        an :class:`EmkitError` naming the file, the line and the field.
        """
        data: dict[str, Any] = dict(defaults or {})
        lines: dict[Location, int] = {}
        if path is not None:
            if str(path).startswith(RECIPE_PREFIX):
                from emkit.recipes import recipe_for  # imported here: recipes build on this module

                recipe = recipe_for(path, cls)
                from_file, lines, path = recipe.settings, recipe.lines, recipe.path
            else:
                from_file, lines = read_yaml_mapping(Path(path))
            _deep_update(data, from_file)
        origin: dict[Location, str] = {}
        for override in overrides:
            location = apply_override(data, override)
            origin[location] = override
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _config_error(exc, path, lines, origin) from None

    def to_yaml(self) -> str:
        """The config as YAML, exactly as it would be loaded back."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def config_hash(self) -> str:
        """A short, stable hash of the config's content (used to key runs and cached results)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


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


def apply_override(data: dict[str, Any], override: str) -> Location:
    """Apply one ``a.b.c=value`` override in place (value parsed as YAML) and return its location."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise EmkitError(f"override '{override}' is not of the form key=value",
                         fix="write e.g. lora.rank=4 or learning_rate=1e-4", where="command line")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    parts = key.strip().split(".")
    target = data
    for part in parts[:-1]:
        child = target.get(part)
        if not isinstance(child, dict):
            child = {}
            target[part] = child
        target = child
    target[parts[-1]] = value
    return tuple(parts)


def _deep_update(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value


def _config_error(exc: ValidationError, path: str | Path | None, lines: dict[Location, int],
                  origin: dict[Location, str]) -> EmkitError:
    first = exc.errors()[0]
    location: Location = tuple(first["loc"])
    field = ".".join(str(part) for part in location) or "(top level)"
    problem = f"config field '{field}': {first['msg']}"
    if first["type"] == "extra_forbidden":
        problem = f"unknown config field '{field}'"
        fix = "remove it or correct its spelling (see `emkit <stage> --help` for the fields)"
    else:
        fix = "give a value of the expected type"
    for length in range(len(location), 0, -1):
        prefix = location[:length]
        if prefix in origin:
            return EmkitError(problem, fix=fix, where=f"override '{origin[prefix]}'")
        if prefix in lines:
            return EmkitError(problem, fix=fix, where=path, line=lines[prefix])
    return EmkitError(problem, fix=fix, where=path or "config")
