"""The command-line options every stage verb shares, defined once for the generic command and for stages that
write their own (``command`` in a stage module), and :func:`load_config`, which reads the first two: a YAML file
or a shipped recipe (``-c recipe:NAME``, checked against the stage table here, where the table is known), then
the ``key=value`` overrides."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import typer

from emkit.config import StageConfig
from emkit.errors import EmkitError
from emkit.recipes import INFO_KEY, Recipe, load_recipe, recipe_name, recipe_names
from emkit.stages import STAGES, stage

ConfigOption = typer.Option(None, "--config", "-c", help="YAML config file for this stage, or recipe:NAME "
                                                          "(a shipped recipe; `emkit recipes` lists them).")
OverridesArgument = typer.Argument(None, help="Config overrides as key=value (e.g. lora.rank=2).")
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress bars.")

Config = TypeVar("Config", bound=StageConfig)


def stage_recipe(name: str) -> Recipe:
    """The shipped recipe ``name``, checked to name a stage of the table."""
    recipe = load_recipe(name)
    verbs = [row.verb for row in STAGES]
    if recipe.info.stage not in verbs:
        raise EmkitError(f"recipe '{name}' names unknown stage '{recipe.info.stage}'",
                         fix=f"use one of {', '.join(verbs)}", where=recipe.path,
                         line=recipe.lines.get((INFO_KEY, "stage")))
    return recipe


def stage_recipes() -> list[Recipe]:
    """Every shipped recipe, in name order, each checked to name a stage of the table."""
    return [stage_recipe(name) for name in recipe_names()]


def load_config(config_class: type[Config], config: str | Path | None, overrides: Iterable[str] = ()) -> Config:
    """A stage's config from its ``-c`` argument and ``key=value`` overrides: the YAML file ``config``, or for
    ``recipe:NAME`` that shipped recipe, which must be a config of ``config_class``'s stage."""
    name = recipe_name(config)
    if name is None:
        return config_class.load(config, overrides)
    recipe = stage_recipe(name)
    if not issubclass(config_class, stage(recipe.info.stage).config()):
        wanted = next((row.verb for row in STAGES if row.config() is config_class), config_class.__name__)
        raise EmkitError(f"recipe '{name}' is for the {recipe.info.stage} stage, not {wanted}",
                         fix=f"run it as `{recipe.command}`")
    return config_class.from_mapping(recipe.settings, recipe.lines, recipe.path, overrides)
