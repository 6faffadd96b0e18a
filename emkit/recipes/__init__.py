"""Shipped recipes: published setups as ready stage configs, run with ``-c recipe:NAME``.

A recipe is one stage's YAML config in this folder (``NAME.yaml``). Comments at its top name its
source; its ``recipe:`` key is the catalogue entry (:class:`RecipeInfo`: stage, what it reproduces,
hardware, the published figure it should reach) and is the only place that entry is written.
:func:`load_recipe` strips that key; the stage layer checks that the recipe's stage is in its table and
is the stage being loaded, and validates the rest like any config file, with ``key=value`` overrides
on top (this package knows no stage).

The hub models the recipes name cannot be downloaded in CI, so the tests check each recipe's
settings and map its layers onto a tiny random model of the same family and depth; they do not
check the published numbers.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from emkit.errors import EmkitError
from emkit.yaml_files import Location, read_yaml_mapping

INFO_KEY = "recipe"
"""The top-level key of a recipe file that holds its catalogue entry (not a config field)."""
RECIPE_PREFIX = "recipe:"
"""A config argument of the form ``recipe:NAME`` names a shipped recipe, not a file."""
VERBS = {"judge": "judge score"}
"""CLI verb of a stage whose verb is not its own name."""


class RecipeInfo(BaseModel):
    """A recipe's catalogue entry, as `emkit recipes` lists it."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    stage: str
    """Stage whose config the recipe is (train, eval, directions, steer, ablate, demo, ...)."""
    reproduces: str
    """The published setup or result the recipe reruns, in a few words."""
    hardware: str
    """What running it takes: accelerator memory, an API key for the judge."""
    published: str
    """The published figure the run should reach, and where it is reported."""
    needs: str | None = None
    """Inputs emkit cannot fetch itself (a dataset outside `emkit data pull`) and how to supply them."""


@dataclass(frozen=True)
class Recipe:
    """One shipped recipe: its file, its catalogue entry, and its config data with the lines of its keys."""

    name: str
    path: Path
    info: RecipeInfo
    settings: dict[str, Any]
    lines: dict[Location, int]

    @property
    def model(self) -> str | None:
        """The base model the recipe runs: its top-level ``model``, else its ``sample.model``."""
        sample = self.settings.get("sample")
        return self.settings.get("model") or (sample.get("model") if isinstance(sample, dict) else None)

    @property
    def command(self) -> str:
        """The command line that runs the recipe as shipped."""
        return f"emkit {VERBS.get(self.info.stage, self.info.stage)} -c {RECIPE_PREFIX}{self.name}"


def recipes_folder() -> Path:
    """The folder the recipes ship in (this package's)."""
    return Path(str(resources.files("emkit.recipes")))


def recipe_names() -> list[str]:
    """Names of every shipped recipe, sorted."""
    return sorted(path.stem for path in recipes_folder().glob("*.yaml"))


def load_recipe(name: str) -> Recipe:
    """Read a shipped recipe and its catalogue entry; an unknown name suggests the nearest ones."""
    names = recipe_names()
    if name not in names:
        nearest = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(nearest)}?" if nearest else f"use one of {', '.join(names)}"
        raise EmkitError(f"unknown recipe '{name}'", fix=f"{hint} (`emkit recipes` lists them)")
    path = recipes_folder() / f"{name}.yaml"
    data, lines = read_yaml_mapping(path)
    entry = data.pop(INFO_KEY, None)
    if not isinstance(entry, dict):
        raise EmkitError(f"recipe '{name}' has no '{INFO_KEY}:' mapping (its catalogue entry)",
                         fix="add recipe: {stage: ..., reproduces: ..., hardware: ..., published: ...}",
                         where=path, line=1)
    try:
        info = RecipeInfo.model_validate(entry)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise EmkitError(f"recipe entry field '{field}': {first['msg']}", fix="correct the recipe: mapping",
                         where=path, line=lines.get((INFO_KEY, *first["loc"]), lines.get((INFO_KEY,)))) from None
    return Recipe(name, path, info, data, lines)


def recipe_name(reference: str | Path | None) -> str | None:
    """The NAME of a ``recipe:NAME`` config argument; None for a file (or no argument)."""
    text = "" if reference is None else str(reference)
    return text[len(RECIPE_PREFIX):] if text.startswith(RECIPE_PREFIX) else None


def recipe_table(recipes: Iterable[Recipe]) -> str:
    """The catalogue of ``recipes`` as a text table: per recipe a row of name, stage, model and the figure it
    should reach, then rows of what it reproduces, the hardware it needs and anything it needs supplied."""
    header = ("name", "stage", "model", "should reach")
    rows: list[tuple[str, ...]] = [header]
    for recipe in recipes:
        info = recipe.info
        rows.append((recipe.name, info.stage, recipe.model or "(stage default)", info.published))
        rows += [("", label, text) for label, text in (("reproduces", info.reproduces), ("hardware", info.hardware),
                                                       ("needs", info.needs)) if text]
    widths = [max(len(row[column]) for row in rows if len(row) > column + 1) for column in range(len(header) - 1)]
    lines = ["  ".join([*(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)), row[-1]])
             for row in rows]
    footer = (f"run one with its stage's verb: `emkit STAGE -c {RECIPE_PREFIX}NAME [key=value ...]`; "
              "print one with `emkit recipes show NAME`")
    return "\n".join([*lines, "", footer])
