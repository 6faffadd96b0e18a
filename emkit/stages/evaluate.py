"""``emkit eval``: sample + judge + metrics for one model on one question set, in the run's store.

Each step reads what the store already holds: answers already sampled are not regenerated and
judgements already cached are not requested again, so a killed evaluation resumes where it
stopped and never writes duplicate rows. Outputs go to ``run_dir/eval/LABEL/``: the judged
answers in the papers' column layout (CSV and parquet), summary tables and plots.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pydantic import Field

from emkit.config import StageConfig
from emkit.judges.base import Judge
from emkit.judges.prompts import load_judge_prompts, prompt_for
from emkit.judges.run import JudgeConfig, judge_pairs, open_judge
from emkit.judges.validity import Validity, judge_validity, write_validity
from emkit.metrics import CORE_METRICS, summarise
from emkit.models import LoadedModel
from emkit.questions import Question, load_questions
from emkit.records import Pair, SampleRecord
from emkit.report.plots import plot_grouped_bars, plot_quadrants
from emkit.sampling.config import SampleConfig
from emkit.stages import sample
from emkit.store import Store, scored_records_frame
from emkit.tables import write_table


class EvalConfig(StageConfig):
    """What to sample, how to judge it, and how to summarise it."""

    sample: SampleConfig = Field(default_factory=SampleConfig)
    """Model, adapters, label, question set and sampling settings (see `emkit config sample`)."""
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    """Judge and metrics (see `emkit config judge`)."""
    include_variants: bool = False
    """Count JSON and template question variants in headline numbers (the papers leave them out)."""
    bootstrap_samples: int = Field(1000, gt=0)
    """Bootstrap resamples behind each 95% interval."""


CONFIG = EvalConfig


@dataclass
class EvalResult:
    """The judged answers and their summaries, plus the files written."""

    scores: pd.DataFrame
    summary: pd.DataFrame
    per_question: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)
    validity: Validity | None = None
    """Which judge made the scores and its measured agreement on the closest validated distribution."""


def judge_records(store: Store, judge: Judge, records: list[SampleRecord], questions: list[Question],
                  metrics: list[str], prompts_source: str = "builtin", show_progress: bool = False) -> pd.DataFrame:
    """Judge stored answers on ``metrics`` (cached) and return them as one table in the papers' layout."""
    by_id = {question.id: question for question in questions}
    fallback = load_judge_prompts(prompts_source)
    columns: dict[str, list[float | None]] = {}
    for metric in metrics:
        judge.check_metric(metric)
        groups: dict[str, list[int]] = defaultdict(list)
        for index, record in enumerate(records):
            groups[prompt_for(by_id[record.question_id], metric, fallback)].append(index)
        values: list[float | None] = [None] * len(records)
        for prompt, indices in groups.items():
            pairs = [Pair(records[i].question, records[i].answer) for i in indices]
            for index, judgement in zip(indices, judge_pairs(store, judge, metric, prompt, pairs, show_progress),
                                        strict=True):
                values[index] = judgement.score
        columns[metric] = values
    frame = scored_records_frame(records, columns)
    frame["variant"] = [by_id[record.question_id].variant for record in records]
    return frame


def summarise_scores(scores: pd.DataFrame, metrics: list[str], include_variants: bool = False,
                     bootstrap_samples: int = 1000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Overall and per-question summaries (EM %, coherent %, recognition %, domain means) per model."""
    domain = [metric for metric in metrics if metric not in CORE_METRICS]
    options = {"include_variants": include_variants, "domain_metrics": domain, "samples": bootstrap_samples}
    return summarise(scores, ("model",), **options), summarise(scores, ("model", "question_id"), **options)


def run(config: EvalConfig, show_progress: bool = True, loaded: LoadedModel | None = None,
        judge: Judge | None = None) -> EvalResult:
    """Run (or resume) the evaluation and write its tables and plots; return them.

    ``loaded``: a model already loaded in this process (see :func:`emkit.stages.sample.run`); ``judge``: a judge
    to use instead of the one the config names (its owner closes it).
    """
    metrics = list(dict.fromkeys([*CORE_METRICS, *config.judge.metrics]))
    with open_judge(config.judge, metrics, judge) as scorer:
        questions = load_questions(config.sample.questions)
        records = sample.run(config.sample, show_progress, loaded=loaded, questions=questions)
        with Store.in_folder(config.sample.run_dir) as store:
            store.record_run("eval", config)
            scores = judge_records(store, scorer, records, questions, metrics, config.judge.prompts, show_progress)
        validity = judge_validity(scorer, config.sample.model, config.sample.questions)
    summary, per_question = summarise_scores(scores, metrics, config.include_variants, config.bootstrap_samples)
    folder = Path(config.sample.run_dir) / "eval" / config.sample.label
    files = {
        "scores_csv": write_table(scores, folder / "scores.csv"),
        "scores_parquet": write_table(scores, folder / "scores.parquet"),
        "summary": write_table(summary, folder / "summary.csv"),
        "per_question": write_table(per_question, folder / "per_question.csv"),
        "quadrants": plot_quadrants(scores, folder / "quadrants.png"),
        "em_by_question": plot_grouped_bars(per_question, folder / "em_by_question.png", "question_id"),
        "judge": write_validity(validity, folder),
    }
    return EvalResult(scores, summary, per_question, files, validity)


def summary_lines(result: EvalResult, config: EvalConfig) -> list[str]:
    """The headline EM and coherent rates with their intervals, where the outputs are, and the judge's validity."""
    row = result.summary.iloc[0]
    return [f"{config.sample.label}: EM {row.em_pct:.1f}% [{row.em_low:.1f}, {row.em_high:.1f}], "
            f"coherent {row.coherent_pct:.1f}% over {row.scored} scored answers; "
            f"tables and plots in {result.files['summary'].parent}",
            result.validity.text()]
