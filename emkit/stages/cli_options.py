"""The command-line options every stage verb shares, defined once for the generic command and for stages that
write their own (``command`` in a stage module)."""

from __future__ import annotations

import typer

ConfigOption = typer.Option(None, "--config", "-c", help="YAML config file for this stage, or recipe:NAME "
                                                          "(a shipped recipe; `emkit recipes` lists them).")
OverridesArgument = typer.Argument(None, help="Config overrides as key=value (e.g. lora.rank=2).")
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress bars.")
