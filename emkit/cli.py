"""The ``emkit`` command line: it registers one verb per row of the stage table (:data:`emkit.stages.STAGES`)
and nothing else.

A stage verb takes an optional YAML config (``-c FILE`` or ``-c recipe:NAME``) and ``key=value`` overrides that
map one-to-one onto the stage's config (``emkit config STAGE`` prints it), runs the stage and prints its
summary lines; a stage whose command line needs more defines its own ``command``. User mistakes end with one
``error:`` line and exit code 2.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import click
import typer
from typer.core import TyperGroup

from emkit.config import StageConfig
from emkit.errors import EmkitError
from emkit.recipes import recipe_table
from emkit.stages import STAGES, Stage, stage
from emkit.stages.cli_options import (
    ConfigOption,
    OverridesArgument,
    QuietOption,
    load_config,
    stage_recipe,
    stage_recipes,
)

OWN_COMMANDS = {row.verb: row for row in STAGES if row.own_command}
"""Verbs whose stage module defines its own command: imported only when that verb is run or asked for help."""


class StageGroup(TyperGroup):
    """The top-level command group: the stage table's verbs first, in its order, and the verbs that a stage module
    defines itself loaded on first use, so ``emkit --help`` imports no stage."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        registered = super().list_commands(ctx)
        verbs = [row.verb for row in STAGES]
        return [*verbs, *(name for name in registered if name not in verbs)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in OWN_COMMANDS and name not in self.commands:
            self.add_command(own_command(OWN_COMMANDS[name]), name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            text = (OWN_COMMANDS[name].help if name in OWN_COMMANDS and name not in self.commands
                    else self.commands[name].help or "")
            rows.append((name, text.split(". ")[0].rstrip(".")))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def own_command(row: Stage) -> click.Command:
    """The click command of a stage module's own ``command`` (a typer function, or a typer app of sub-verbs)."""
    command = row.module().command
    if isinstance(command, typer.Typer):
        group = typer.main.get_command(command)
        group.help = row.help
        return group
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    single.command(row.verb, help=row.help)(command)
    return typer.main.get_command(single)


app = typer.Typer(cls=StageGroup, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="Emergent-misalignment research toolkit.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: validate files, pull the papers' data.")
app.add_typer(data_app, name="data")
models_app = typer.Typer(help="Embedded models: list them, or check and convert one (`emkit models prepare NAME`).")
app.add_typer(models_app, name="models")
recipes_app = typer.Typer(help="Shipped recipes: the papers' setups as configs (run one with -c recipe:NAME).")
app.add_typer(recipes_app, name="recipes")


def stage_command(row: Stage) -> Callable[..., None]:
    """The generic verb: load the stage's config from ``-c`` and overrides, run it, print its summary lines. The
    stage's module is imported only when the verb runs."""

    def command(config: Path | None = ConfigOption, overrides: list[str] | None = OverridesArgument,
                quiet: bool = QuietOption) -> None:
        module = row.module()
        settings = load_config(module.CONFIG, config, overrides or [])
        result = module.run(settings, show_progress=not quiet)
        for line in module.summary_lines(result, settings):
            typer.echo(line)

    command.__doc__ = row.help
    return command


def register_stages() -> None:
    """One generic verb per stage; the verbs whose module defines its own command are added by :class:`StageGroup`
    when used."""
    for row in STAGES:
        if not row.own_command:
            app.command(row.verb, help=row.help)(stage_command(row))


def stage_configs() -> dict[str, type[StageConfig]]:
    """Every stage's verb and config class."""
    return {row.verb: row.config() for row in STAGES}


@app.command("config")
def show_config(verb: str = typer.Argument(..., metavar="STAGE",
                                         help="A stage verb: " + ", ".join(row.verb for row in STAGES))) -> None:
    """Print a stage's config fields with their defaults and meaning, as YAML to start from."""
    try:
        row = stage(verb)
    except KeyError:
        raise EmkitError(f"unknown stage '{verb}'", fix=f"use one of {', '.join(r.verb for r in STAGES)}") from None
    typer.echo(config_template(row.config()))


def config_template(config_class: type[StageConfig]) -> str:
    """Commented YAML of a config class: each field's docstring above its default value."""
    import yaml

    lines = []
    for name, field in config_class.model_fields.items():
        if field.description:
            lines += [f"# {line.strip()}" for line in field.description.splitlines()]
        default = field.get_default(call_default_factory=True)
        if hasattr(default, "model_dump"):
            default = default.model_dump(mode="json")
        elif isinstance(default, Path):
            default = str(default)
        if field.is_required():
            lines.append(f"{name}:  # required")
        else:
            lines.append(yaml.safe_dump({name: default}, sort_keys=False).rstrip())
    return "\n".join(lines)


@recipes_app.callback(invoke_without_command=True)
def recipes_list(context: typer.Context) -> None:
    """List the shipped recipes: stage, model, hardware, the published figure each should reach, what it reproduces."""
    if context.invoked_subcommand is None:
        typer.echo(recipe_table(stage_recipes()))


@recipes_app.command("show")
def recipes_show(name: str = typer.Argument(..., help="Recipe name (see `emkit recipes`).")) -> None:
    """Print a recipe's YAML: its source, its catalogue entry and its settings."""
    typer.echo(stage_recipe(name).path.read_text(encoding="utf-8"), nl=False)


@models_app.callback(invoke_without_command=True)
def models_list(context: typer.Context) -> None:
    """List the embedded models: what each is, its download size, whether it is installed and converted."""
    if context.invoked_subcommand is None:
        from emkit.models import embedded_table

        typer.echo(embedded_table())


@models_app.command("prepare")
def models_prepare(name: str = typer.Argument(..., help="An embedded model's name (see `emkit models`).")) -> None:
    """Check an embedded model's parts (size, sha256, GGUF header), join them and convert once to safetensors."""
    from emkit.models import resolve_model_source

    typer.echo(f"{name} ready in {resolve_model_source(name)}")


@data_app.command("validate")
def data_validate(files: list[str] = typer.Argument(..., help="JSONL files or demo:/paper: references.")) -> None:
    """Check chat datasets line by line; report the first problem of each file."""
    from emkit.data import read_chat_dataset, resolve_dataset

    for reference in files:
        conversations = read_chat_dataset(resolve_dataset(reference))
        typer.echo(f"{reference}: {len(conversations)} conversations, valid")


@data_app.command("pull")
def data_pull(source: Path | None = typer.Option(None, "--from", help="Copy from this local folder instead."),
              quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.")) -> None:
    """Fetch the papers' training datasets and question sets (pinned commit, sha256 checked, cached)."""
    from emkit.data.pull import pull
    from emkit.paths import data_override

    folder = pull(source or data_override(), progress=not quiet)
    typer.echo(f"papers' data ready in {folder}")


register_stages()


def main() -> None:
    """Console entry point: run the app, turning user mistakes into one line and exit code 2."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        app()
    except EmkitError as exc:
        typer.echo(f"error: {exc.one_line()}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted: finished work is saved; rerun the same command to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
