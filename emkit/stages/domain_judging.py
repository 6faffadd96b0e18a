"""Judging what the dynamics stages sample or read: aligned and coherent from one judge, a domain metric (medical,
financial, ...) from the same or its own judge, cached in the store; and the EM figures as their summaries print
them."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import pandas as pd

from emkit.errors import EmkitError
from emkit.judges.base import Judge
from emkit.judges.run import JudgeConfig, open_judge
from emkit.metrics import CORE_METRICS
from emkit.questions import Question, load_questions
from emkit.records import SampleRecord
from emkit.stages.evaluate import judge_records
from emkit.store import Store


@contextlib.contextmanager
def open_judges(core: JudgeConfig, domain: str | None, domain_config: JudgeConfig | None,
                judge: Judge | None = None, domain_judge: Judge | None = None) -> Iterator[tuple[Judge, Judge | None]]:
    """The judge for aligned/coherent (plus ``core.metrics``) and the one for ``domain``, checked before any work.

    Judges passed in are used as they are (and not closed); the others are built from their configs (the domain
    judge from ``domain_config``, else it is the core judge).
    """
    with contextlib.ExitStack() as stack:
        judge = stack.enter_context(open_judge(core, metric_list(core), judge))
        if domain is not None:
            if domain_judge is None:
                domain_judge = judge if domain_config is None else stack.enter_context(open_judge(domain_config))
            try:
                domain_judge.check_metric(domain)
            except EmkitError as error:
                raise EmkitError(error.problem, fix=f"set domain_judge.judge=local or openai to score '{domain}'",
                                 where=error.where) from None
        yield judge, domain_judge


def metric_list(config: JudgeConfig) -> list[str]:
    """aligned and coherent, then any further metrics the judge config names."""
    return list(dict.fromkeys([*CORE_METRICS, *config.metrics]))


def question_lookup(sources: Sequence[str], records: Sequence[SampleRecord]) -> list[Question]:
    """The questions behind ``records``: from the named sets where listed (their own judge prompts), else bare."""
    known = {question.id: question for source in sources for question in load_questions(source)}
    for record in records:
        known.setdefault(record.question_id, Question(id=record.question_id, paraphrases=(record.question,),
                                                      system=record.system))
    return list(known.values())


def judge_answers(store: Store, records: list[SampleRecord], questions: list[Question], judge: Judge,
                  core: JudgeConfig, domain: str | None = None, domain_judge: Judge | None = None,
                  domain_prompts: str = "builtin", show_progress: bool = False) -> pd.DataFrame:
    """Judged answers in the papers' layout (cached), with the domain metric from its own judge where asked."""
    scores = judge_records(store, judge, records, questions, metric_list(core), core.prompts, show_progress)
    if domain is not None and domain not in scores.columns:
        extra = judge_records(store, domain_judge, records, questions, [domain], domain_prompts, show_progress)
        scores.insert(scores.columns.get_loc("coherent") + 1, domain, extra[domain].to_numpy())
    return scores


def number(value: float | None) -> str:
    """One decimal, or n/a where nothing was scored."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.1f}"


def pct(row: pd.Series, name: str = "em") -> str:
    """``12.5% [8.0, 17.1]`` from a summary row."""
    if number(row[f"{name}_pct"]) == "n/a":
        return "n/a"
    return f"{row[f'{name}_pct']:.1f}% [{row[f'{name}_low']:.1f}, {row[f'{name}_high']:.1f}]"
