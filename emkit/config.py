"""Typed stage configs: a YAML file plus ``key.sub=value`` overrides from the CLI.

Every stage (train, sample, demo, ...) has one pydantic config class derived from
:class:`StageConfig`. A config is the only way a stage's behaviour changes, so a run folder
that stores its config (and its hash) is enough to reproduce it.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emkit.embedded import DEFAULT_MODEL
from emkit.errors import EmkitError
from emkit.yaml_files import Location, read_yaml_mapping


class StageConfig(BaseModel):
    """Base class of every stage config: strict keys, field docstrings as descriptions."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, protected_namespaces=())

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: Iterable[str] = (),
             defaults: dict[str, Any] | None = None) -> Self:
        """Build the config from ``defaults``, then the YAML file at ``path``, then ``overrides``.

        Any problem becomes an :class:`EmkitError` naming the file, the line and the field. (A stage verb's
        ``-c recipe:NAME`` is resolved in the stage layer, which hands the recipe's settings to :meth:`from_mapping`.)
        """
        data: dict[str, Any] = dict(defaults or {})
        lines: dict[Location, int] = {}
        if path is not None:
            from_file, lines = read_yaml_mapping(Path(path))
            _deep_update(data, from_file)
        return cls.from_mapping(data, lines, path, overrides)

    @classmethod
    def from_mapping(cls, settings: dict[str, Any], lines: dict[Location, int] | None = None,
                     source: str | Path | None = None, overrides: Iterable[str] = ()) -> Self:
        """Build the config from ``settings`` (read from the file ``source``, with each key's line there in
        ``lines``), then ``overrides``; errors name the file and line, or the override, as :meth:`load`'s do."""
        data = copy.deepcopy(settings)
        origin: dict[Location, str] = {}
        for override in overrides:
            location = apply_override(data, override)
            check_key(cls, location, override)
            origin[location] = override
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _config_error(cls, exc, source, lines or {}, origin) from None

    def to_yaml(self) -> str:
        """The config as YAML, exactly as it would be loaded back."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def config_hash(self) -> str:
        """A short, stable hash of the config's content (used to key runs and cached results)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class ModelSection(StageConfig):
    """The settings every stage that loads a model shares, spelled the same way in each (a base for its config)."""

    model: str = DEFAULT_MODEL
    """Base model: an embedded name, a hub id, or a local folder."""
    adapters: list[str] = Field(default_factory=list)
    """LoRA adapter folders applied on top of the base model (all active)."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    dtype: str = "auto"
    """auto (bf16 where fast), float32, bfloat16 or float16."""
    trust_remote_code: bool = False
    """Allow model code from the hub."""

    def load_model(self, adapters: Iterable[str | Path] | None = None):
        """The one model-loading call of the stages: this section's model, with ``adapters`` instead of its own
        when given (returns :class:`emkit.models.LoadedModel`)."""
        from emkit.models import load_model  # torch and transformers load only when a model does

        chosen = self.adapters if adapters is None else [str(adapter) for adapter in adapters]
        return load_model(self.model, chosen, self.device, self.dtype, self.trust_remote_code)


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


def key_kinds(config_class: type[BaseModel], prefix: str = "") -> dict[str, str]:
    """Every dotted key a config accepts, with its kind: ``section`` (a nested config), ``mapping`` (a dict field:
    any sub-key) or ``value``."""
    kinds: dict[str, str] = {}
    for name, field in config_class.model_fields.items():
        key = f"{prefix}{name}"
        section = _section_class(field.annotation)
        if section is not None:
            kinds[key] = "section"
            kinds |= key_kinds(section, f"{key}.")
        else:
            kinds[key] = "mapping" if typing.get_origin(field.annotation) is dict else "value"
    return kinds


def _section_class(annotation: Any) -> type[BaseModel] | None:
    """The nested config class of a field typed ``Section`` or ``Section | None``, else None."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def check_key(config_class: type[BaseModel], location: Location, override: str) -> None:
    """Refuse an override whose key the config does not have, quoting it and suggesting the nearest valid key."""
    kinds = key_kinds(config_class)
    for length in range(1, len(location) + 1):
        key = ".".join(str(part) for part in location[:length])
        kind = kinds.get(key)
        if kind == "mapping":
            return
        if kind is None or (kind == "value" and length < len(location)):
            typed = ".".join(str(part) for part in location)
            problem = (f"'{key}' is a single value, so '{typed}' has no meaning" if kind == "value"
                       else f"unknown config key '{typed}'")
            nearest = difflib.get_close_matches(typed, [k for k, v in kinds.items() if v != "section"], n=1,
                                                cutoff=0.5)
            hint = f"did you mean '{nearest[0]}'? " if nearest else ""
            raise EmkitError(problem, fix=f"{hint}`emkit config STAGE` lists every key", where=f"override '{override}'")


def _deep_update(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value


def _config_error(config_class: type[BaseModel], exc: ValidationError, path: str | Path | None,
                  lines: dict[Location, int], origin: dict[Location, str]) -> EmkitError:
    first = exc.errors()[0]
    location: Location = tuple(first["loc"])
    field = ".".join(str(part) for part in location) or "(top level)"
    problem = f"config field '{field}': {first['msg']}"
    if first["type"] == "extra_forbidden":
        problem = f"unknown config field '{field}'"
        siblings = [key for key in key_kinds(config_class) if key.count(".") == field.count(".")]
        nearest = difflib.get_close_matches(field, siblings, n=1, cutoff=0.5)
        hint = f"did you mean '{nearest[0]}'? " if nearest else "remove it or correct its spelling; "
        fix = f"{hint}`emkit config STAGE` lists every field"
    else:
        fix = "give a value of the expected type"
    for length in range(len(location), 0, -1):
        prefix = location[:length]
        if prefix in origin:
            return EmkitError(problem, fix=fix, where=f"override '{origin[prefix]}'")
        if prefix in lines:
            return EmkitError(problem, fix=fix, where=path, line=lines[prefix])
    return EmkitError(problem, fix=fix, where=path or "config")
