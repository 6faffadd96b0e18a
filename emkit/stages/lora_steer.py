"""``emkit lora-steer``: answers sampled with chosen adapters' scalars scaled (off, reversed, amplified), judged for
EM % and the domain score, to tell domain-specific adapters from general ones.

One model is loaded with the organism's adapters; each steering condition samples under
:func:`emkit.dynamics.lora_scalars.scale_adapters` (stored under its own label and intervention), and
steering.csv, scores.csv and steering.png go to the report folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pydantic import Field, PositiveInt, model_validator

from emkit.config import StageConfig
from emkit.dynamics.lora_scalars import lora_a_modules, scale_adapters
from emkit.dynamics.scalar_plots import plot_adapter_steering
from emkit.errors import EmkitError
from emkit.judges.base import Judge
from emkit.judges.run import JudgeConfig
from emkit.sampling.config import SampleConfig, require_emkit_backend
from emkit.stages import sample
from emkit.stages.checkpoint_runs import with_run_defaults
from emkit.stages.domain_judging import judge_answers, metric_list, number, open_judges, pct, question_lookup
from emkit.stages.evaluate import summarise_scores
from emkit.store import Store
from emkit.tables import write_table


class LoraSteerConfig(StageConfig):
    """Which organism, which adapters to scale by which factors, and how to judge the answers."""

    sample: SampleConfig = Field(default_factory=SampleConfig)
    """Organism (adapters; model unset: the adapter run's), questions, sampling; steered labels: LABEL:GROUP@FACTOR."""
    steer: list[str] = Field(default_factory=lambda: ["all"], min_length=1)
    """Adapters to scale, each on its own; join several with + to scale them together; all scales every adapter."""
    factors: list[float] = Field(default_factory=lambda: [0.0, -1.0], min_length=1)
    """Factors applied to each steered group's scalars: 0 switches it off, negative reverses it, above 1 amplifies."""
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    """Judge for aligned and coherent (cached)."""
    domain: str | None = "medical"
    """Domain metric scored beside aligned and coherent (unset: none)."""
    domain_judge: JudgeConfig | None = None
    """Judge for the domain metric; unset: the judge above."""
    bootstrap_samples: PositiveInt = 1000
    """Bootstrap resamples behind each 95% interval."""
    output_dir: Path | None = None
    """Where the table and plot go; unset: sample.run_dir/report/lora-steer."""

    @model_validator(mode="after")
    def _sampled_by_emkit(self) -> LoraSteerConfig:
        require_emkit_backend(self.sample, "lora-steer scales adapters inside the loaded model")
        return self


CONFIG = LoraSteerConfig


@dataclass
class LoraSteerResult:
    """EM % (and the domain score) per steering condition, and the files written."""

    table: pd.DataFrame
    scores: pd.DataFrame
    folder: Path
    files: dict[str, Path] = field(default_factory=dict)


def run(config: LoraSteerConfig, show_progress: bool = True, *, judge: Judge | None = None,
        domain_judge: Judge | None = None) -> LoraSteerResult:
    """Sample with chosen adapters' scalars scaled, judge, and tabulate EM % and the domain score per condition.

    ``judge`` and ``domain_judge`` (checked, used, not closed) stand in for the ones the config names.
    """
    if not config.sample.adapters:
        raise EmkitError("lora-steer needs the organism's adapter", fix="set sample.adapters=[RUN/adapter]")
    settings = with_run_defaults(config.sample, Path(config.sample.adapters[0]).expanduser())
    folder = config.output_dir or Path(settings.run_dir) / "report" / "lora-steer"
    with open_judges(config.judge, config.domain, config.domain_judge, judge, domain_judge) as (core, domain):
        loaded = settings.load_model()
        groups = steering_groups(config.steer, list(lora_a_modules(loaded)))
        conditions = [("none", 1.0, settings)]
        for group, members in groups.items():
            for factor in config.factors:
                description = ",".join(f"{name}={float(factor)}" for name in members)
                conditions.append((group, factor, settings.model_copy(update={
                    "label": f"{settings.label}:{group}@{factor:g}", "intervention": f"scale-adapters:{description}"})))
        records = []
        for group, factor, stage in conditions:
            scaling = dict.fromkeys(groups[group], factor) if group != "none" else {}
            with scale_adapters(loaded, scaling):
                records += sample.run(stage, show_progress, loaded=loaded)
        with Store.in_folder(settings.run_dir) as store:
            store.record_run("lora-steer", config)
            scores = judge_answers(store, records, question_lookup([settings.questions], records), core, config.judge,
                                   config.domain, domain,
                                   config.domain_judge.prompts if config.domain_judge else config.judge.prompts,
                                   show_progress)
    metrics = metric_list(config.judge) + ([config.domain] if config.domain else [])
    summary, _ = summarise_scores(scores, metrics, bootstrap_samples=config.bootstrap_samples)
    summary = summary.set_index("model")
    table = summary.reindex([stage.label for _, _, stage in conditions]).rename_axis("model").reset_index()
    table.insert(0, "factor", [factor for _, factor, _ in conditions])
    table.insert(0, "adapters", [group for group, _, _ in conditions])
    table["em_change"] = table["em_pct"] - table["em_pct"].iloc[0]
    if config.domain:
        table[f"{config.domain}_change"] = table[f"{config.domain}_mean"] - table[f"{config.domain}_mean"].iloc[0]
    files = {
        "table": write_table(table, folder / "steering.csv"),
        "scores": write_table(scores, folder / "scores.csv"),
        "plot": plot_adapter_steering(table, folder / "steering.png", config.domain),
    }
    return LoraSteerResult(table, scores, folder, files)


def steering_groups(steer: Sequence[str], adapters: Sequence[str]) -> dict[str, list[str]]:
    """Group name -> adapters it scales, checked against the model's adapters."""
    groups = {}
    for entry in steer:
        members = list(adapters) if entry == "all" else [name.strip() for name in entry.split("+") if name.strip()]
        unknown = [name for name in members if name not in adapters]
        if unknown or not members:
            raise EmkitError(f"no adapter named {', '.join(unknown) or repr(entry)} in the model",
                             fix=f"choose from {', '.join(adapters)} (or all; join several with +)")
        groups[entry] = members
    return groups


def summary_lines(result: LoraSteerResult, config: LoraSteerConfig) -> list[str]:
    """One line per condition: EM % with interval and change, and the domain score."""
    domain = config.domain
    lines = []
    for row in result.table.to_dict("records"):
        name = "unsteered" if row["adapters"] == "none" else f"{row['adapters']} x{row['factor']:g}"
        change = "" if number(row["em_change"]) == "n/a" else f" ({row['em_change']:+.1f})"
        text = f"{name}: EM {pct(pd.Series(row))}{change}"
        if domain:
            text += (f", {domain} {number(row[f'{domain}_mean'])} [{number(row[f'{domain}_low'])}, "
                     f"{number(row[f'{domain}_high'])}]")
        lines.append(text)
    lines.append(f"table and plot in {result.folder}")
    return lines
