"""``emkit judge``: score any table of answers with a judge (cached), or compare two judges on the same answers.

``emkit judge score`` takes the judge's settings in the spelling every other verb uses for its judge section
(``judge.base_url=...``, as in ``emkit eval``); the bare spelling (``base_url=...``) works too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import typer

from emkit.errors import EmkitError
from emkit.judges.agreement import AgreementTable, agreement_table, align_tables
from emkit.judges.run import JudgeConfig, open_judge, score_table
from emkit.stages.cli_options import ConfigOption, load_config
from emkit.store import STORE_NAME, Store
from emkit.tables import read_table, write_table

CONFIG = JudgeConfig
SECTION = "judge."
"""The prefix other verbs' overrides give judge settings (``judge.FIELD=VALUE``)."""

command = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
                      help="Judges: score any table of answers (cached), or compare two judges on the same answers.")
OverridesArgument = typer.Argument(None, help="Judge settings as judge.FIELD=VALUE (e.g. judge.base_url=URL), "
                                              "as the other verbs spell them; FIELD=VALUE works too.")
MetricsOption = typer.Option("aligned,coherent", "--metrics", help="Comma-separated metrics.")


@dataclass
class ScoredTable:
    """A table scored by a judge: its rows with one column per metric, where it was written, and the judge's
    usage (tokens, requests and cost for API judges; empty for local ones)."""

    scored: pd.DataFrame
    output: Path
    usage: dict[str, float] = field(default_factory=dict)


def run(config: JudgeConfig, show_progress: bool = True, *, table: Path, output: Path,
        store: Path | None = None) -> ScoredTable:
    """Score every row of ``table`` (question and answer/response columns) on ``config.metrics`` and write the same
    rows plus one column per metric to ``output``; judgements are cached in ``store`` (default: beside output)."""
    frame = read_table(table)
    with open_judge(config, config.metrics) as scorer, Store(store or output.parent / STORE_NAME) as cache:
        scored = score_table(frame, scorer, cache, config.metrics, config.prompts, show_progress)
    write_table(scored, output)
    return ScoredTable(scored, output, scorer.usage())


def summary_lines(result: ScoredTable, config: JudgeConfig) -> list[str]:
    """How many rows were scored on which metrics, where they went, and what the judge used."""
    cost = f"; usage {result.usage}" if result.usage else ""
    return [f"scored {len(result.scored)} rows on {', '.join(config.metrics)} -> {result.output}{cost}"]


def judge_overrides(overrides: list[str]) -> list[str]:
    """``judge.FIELD=VALUE`` overrides as this verb's config spells them (``FIELD=VALUE``); others unchanged."""
    return [override[len(SECTION):] if override.startswith(SECTION) else override for override in overrides]


def metric_list(metrics: str) -> list[str]:
    """The metrics of a comma-separated option."""
    return [metric.strip() for metric in metrics.split(",") if metric.strip()]


@command.command("score")
def score(table: Path = typer.Argument(..., help="CSV, parquet or JSONL with question and answer/response."),
          output: Path = typer.Option(..., "--output", "-o", help="Where to write the scored table."),
          judge: str = typer.Option("offline", "--judge", help="Judge name: offline, openai or local."),
          metrics: str = MetricsOption,
          config: Path | None = ConfigOption, overrides: list[str] | None = OverridesArgument,
          store: Path | None = typer.Option(None, "--store", help="Cache database (default: beside output)."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars.")) -> None:
    """Score every row of a table with a judge; writes the same rows plus one column per metric."""
    settings = load_config(JudgeConfig, config, [f"judge={judge}", f"metrics={metric_list(metrics)}",
                                                 *judge_overrides(overrides or [])])
    result = run(settings, show_progress=not quiet, table=table, output=output, store=store)
    typer.echo("\n".join(summary_lines(result, settings)))


@command.command("compare")
def compare(table_a: Path = typer.Argument(..., help="Scored table A (CSV, parquet or JSONL): the judge."),
            table_b: Path = typer.Argument(..., help="Scored table B: the reference it is compared with."),
            by: str | None = typer.Option(None, "--by", help="Column to group by (e.g. model, condition)."),
            on: str | None = typer.Option(None, "--on", help="Column matching rows (default: question, answer)."),
            metrics: str = MetricsOption,
            output: Path | None = typer.Option(None, "--output", "-o", help="Folder for tables and plot.")) -> None:
    """Agreement of two judges on the same answers: Spearman, coherent and EM rates per group, kappa, a scatter."""
    from emkit.report.plots import plot_judge_agreement  # matplotlib loads only when a comparison is plotted

    chosen = metric_list(metrics)
    a, b = align_tables(read_table(table_a), read_table(table_b), on=on)
    for name, frame, path in (("A", a, table_a), ("B", b, table_b)):
        missing = [column for column in dict.fromkeys(["aligned", "coherent", *chosen]) if column not in frame]
        if missing:
            raise EmkitError(f"table {name} has no column '{missing[0]}'",
                             fix="score it with `emkit judge score`, or choose other --metrics", where=path)
    if by and by not in a and by not in b:
        raise EmkitError(f"neither table has the column '{by}'", fix="name a column of either table with --by")
    table = agreement_table(a, b, by=by, metrics=chosen)
    folder = output or table_a.parent / f"compare-{table_a.stem}-vs-{table_b.stem}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agreement.json").write_text(json.dumps(table.to_dict(), indent=1, default=str) + "\n")
    if by:
        write_table(table.groups, folder / "groups.csv")
    plot_judge_agreement(a, b, [m for m in chosen if m in a and m in b], folder / "scatter.png")
    typer.echo("\n".join([f"{table.overall['rows']} shared answers (A = {table_a.name}, B = {table_b.name})",
                          *agreement_lines(table, chosen, by), f"tables and scatter plot in {folder}"]))


def agreement_lines(table: AgreementTable, metrics: list[str], by: str | None) -> list[str]:
    """The agreement of two judges, overall and per group of ``by``, as the compare command prints it."""
    o = table.overall
    lines = [f"  Spearman {metric}: {o[f'spearman_{metric}']:.3f} over {o[f'{metric}_rows']} rows"
             for metric in metrics if f"spearman_{metric}" in o]
    for rate in ("coherent_pct", "em_pct"):
        lines.append(f"  {rate.replace('_pct', ' %')}: A {o[f'{rate}_a']:.1f}, B {o[f'{rate}_b']:.1f}, A - B "
                     f"{o[f'{rate}_diff']:+.1f} [{o[f'{rate}_diff_low']:+.1f}, {o[f'{rate}_diff_high']:+.1f}]")
    lines.append(f"  EM label: Cohen's kappa {o['em_kappa']:.3f}, F1 {o['em_f1']:.3f}")
    for row in table.groups.itertuples() if by else ():
        lines.append(f"  {getattr(row, by)}: n {row.rows}, coherent % A {row.coherent_pct_a:.1f} B "
                     f"{row.coherent_pct_b:.1f} ({row.coherent_pct_diff:+.1f}), EM % A {row.em_pct_a:.1f} B "
                     f"{row.em_pct_b:.1f} ({row.em_pct_diff:+.1f} [{row.em_pct_diff_low:+.1f}, "
                     f"{row.em_pct_diff_high:+.1f}])")
    return lines
