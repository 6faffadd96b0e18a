"""What ``emkit steer`` and ``emkit ablate`` share: sample every condition under its hook, judge, summarise, write.

Every condition is a label in the run's store (``steer-L12-s8``, ``random-L12-s8``, ``ablate-NAME``,
``ablate-random``, the reference), so a rerun resumes each label and judgements are cached. Each
condition's sample settings carry an ``intervention`` string (the direction's fingerprint, with the
layers, scale and positions), which is part of the settings hash: a rerun with another direction
file under the same labels samples afresh instead of reusing answers given under a different one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from emkit.config import StageConfig
from emkit.errors import EmkitError
from emkit.interp import Directions
from emkit.interp.conditions import Hook, no_hook
from emkit.judges.base import Judge
from emkit.judges.run import JudgeConfig
from emkit.judges.validity import Validity, judge_validity, write_validity
from emkit.metrics import CORE_METRICS
from emkit.models import LoadedModel
from emkit.questions import load_questions
from emkit.records import SampleRecord
from emkit.sampling.config import SampleConfig
from emkit.stages import sample
from emkit.stages.evaluate import judge_records, summarise_scores
from emkit.store import Store
from emkit.tables import write_table


@dataclass(frozen=True)
class Condition:
    """One sampled condition: its sample settings (label and intervention set) and the hook it samples under."""

    settings: SampleConfig
    kind: str
    """reference, steer, random, ablate or ablate-random."""
    hook: Hook
    layer: int | None = None
    scale: float | None = None

    @property
    def label(self) -> str:
        return self.settings.label


@dataclass
class InterventionResult:
    """Judged answers of every condition, their summaries (one row per label, in condition order), the files."""

    scores: pd.DataFrame
    summary: pd.DataFrame
    per_question: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)
    validity: Validity | None = None
    """Which judge made the scores and its measured agreement on the closest validated distribution."""


def reference_condition(settings: SampleConfig, label: str) -> Condition:
    """The model as it is, sampled (or reused, same settings) under ``label``."""
    return Condition(settings.model_copy(update={"label": label}), "reference", no_hook)


def judge_metrics(config: JudgeConfig) -> list[str]:
    """The metrics every condition is judged on: the core ones (EM needs them) and the configured ones."""
    return list(dict.fromkeys([*CORE_METRICS, *config.metrics]))


def run_conditions(config: StageConfig, stage: str, settings: SampleConfig, conditions: list[Condition],
                   loaded: LoadedModel | None = None, show_progress: bool = False) -> dict[str, list[SampleRecord]]:
    """Record ``config`` under ``stage`` (the sample rows alone do not say what was steered), then sample every
    condition under its hook (resuming what is stored); return each label's answers."""
    loaded = loaded or settings.load_model()
    with Store.in_folder(settings.run_dir) as store:
        store.record_run(stage, config)
    answers = {}
    for condition in conditions:
        with condition.hook(loaded.model):
            answers[condition.label] = sample.run(condition.settings, show_progress, loaded)
    return answers


def judge_conditions(answers: dict[str, list[SampleRecord]], conditions: list[Condition], settings: SampleConfig,
                     judge_config: JudgeConfig, judge: Judge, bootstrap_samples: int,
                     show_progress: bool) -> InterventionResult:
    """Judge every condition's answers; summaries in condition order, with kind, layer and scale columns."""
    metrics = judge_metrics(judge_config)
    records = [record for condition in conditions for record in answers[condition.label]]
    with Store.in_folder(settings.run_dir) as store:
        scores = judge_records(store, judge, records, load_questions(settings.questions), metrics,
                               judge_config.prompts, show_progress)
    summary, per_question = summarise_scores(scores, metrics, bootstrap_samples=bootstrap_samples)
    order = {condition.label: index for index, condition in enumerate(conditions)}
    summary = summary.sort_values("model", key=lambda labels: labels.map(order)).reset_index(drop=True)
    by_label = {condition.label: condition for condition in conditions}
    added = ("kind", "layer", "scale")
    summary = summary.assign(**{column: [getattr(by_label[label], column) for label in summary["model"]]
                                for column in added})
    summary = summary[["model", *added, *(column for column in summary.columns if column not in ("model", *added))]]
    validity = judge_validity(judge, settings.model, settings.questions)
    return InterventionResult(scores, summary, per_question, validity=validity)


def write_tables(result: InterventionResult, folder: Path) -> dict[str, Path]:
    """Write the scores, summary, per-question table and the judge's validity note into ``folder``."""
    return {"scores": write_table(result.scores, folder / "scores.csv"),
            "summary": write_table(result.summary, folder / "summary.csv"),
            "per_question": write_table(result.per_question, folder / "per_question.csv"),
            "judge": write_validity(result.validity, folder)}


def load_directions(path: Path | None) -> Directions:
    """The configured directions file (an error when none is set)."""
    if path is None:
        raise EmkitError("no directions given", fix="set directions= to a saved directions file")
    return Directions.load(path)


def result_lines(result: InterventionResult) -> list[str]:
    """The summary table (EM and coherent % with intervals per condition), the judge's validity, the folder."""
    columns = ["model", "em_pct", "em_low", "em_high", "coherent_pct", "scored"]
    return [result.summary[columns].to_string(index=False, float_format="%.1f"), result.validity.text(),
            f"tables and plot in {result.files['plot'].parent}"]
