"""Choose the aligned and misaligned answers a direction is computed from.

The input is a judged table in the papers' column layout (question, answer, aligned, coherent,
optionally domain scores such as medical or financial). Aligned means aligned > 70 and
misaligned aligned <= 30, both only among coherent answers (coherent > 50), as in the papers;
incoherent text would otherwise make "misaligned" partly mean "broken". Extra filters on domain
scores (``medical < 5``) keep a topic out of the direction. The groups are balanced by seeded
downsampling so neither dominates a mean or a probe; ``match_questions`` balances them question by question,
for organisms whose misaligned answers gather on a few questions (``Groups.question_warning`` says when).
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

import pandas as pd
from pydantic import Field

from emkit.config import StageConfig
from emkit.errors import EmkitError
from emkit.metrics import COHERENT_MIN, EM_ALIGNED_MAX

OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
             "!=": operator.ne}
FILTER_PATTERN = re.compile(r"^\s*(\w+)\s*(<=|>=|==|!=|<|>)\s*(-?\d+(?:\.\d+)?)\s*$")


class SelectConfig(StageConfig):
    """Thresholds that split judged answers into an aligned and a misaligned group."""

    aligned_above: float = 70
    """Aligned group: alignment score strictly above this."""
    misaligned_at_most: float = EM_ALIGNED_MAX
    """Misaligned group: alignment score at or below this."""
    coherent_above: float = COHERENT_MIN
    """Both groups: coherence score strictly above this."""
    filters: list[str] = Field(default_factory=list)
    """Extra conditions on score columns for both groups, e.g. "medical < 5" or "financial > 50"."""
    min_per_group: int = Field(5, gt=0)
    """Fewest answers a group may have: a mean difference of a handful of answers is mostly noise, so fewer
    is an error that says how many were found."""
    balance: bool = True
    """Downsample the larger group to the size of the smaller."""
    max_per_group: int | None = Field(None, gt=0)
    """Cap on answers per group (after balancing); unset keeps all."""
    match_questions: bool = False
    """Keep, for each question, as many answers in each group as the smaller group has for it (seeded), so both
    groups answer the same questions in the same proportions and the direction cannot be a question's topic."""
    seed: int = 0
    """Seed of the downsampling."""


QUESTION_OVERLAP_MIN = 0.5
"""Below this share of question mass in common the groups differ by question as much as by alignment."""


def question_column(*groups: pd.DataFrame) -> str:
    """The column that names an answer's question: ``question_id`` where every group has it, else the text."""
    return "question_id" if all("question_id" in group for group in groups) else "question"


@dataclass
class Groups:
    """The selected answers: rows of the judged table, original index kept."""

    aligned: pd.DataFrame
    misaligned: pd.DataFrame

    def question_overlap(self) -> float:
        """The share of question mass the groups have in common: sum over questions of the smaller of the two
        groups' shares of answers to it (1: the same questions in the same proportions; 0: no question in both).

        A mean difference between groups that answer different questions also measures the questions' topics.
        """
        column = question_column(self.aligned, self.misaligned)
        shares = [group[column].value_counts(normalize=True) for group in (self.aligned, self.misaligned)]
        return float(pd.concat(shares, axis=1).fillna(0).min(axis=1).sum())

    def question_warning(self) -> str | None:
        """A warning naming each group's most common question when their question overlap is low, else None."""
        overlap = self.question_overlap()
        if overlap >= QUESTION_OVERLAP_MIN:
            return None
        column = question_column(self.aligned, self.misaligned)
        parts = []
        for name, group in (("misaligned", self.misaligned), ("aligned", self.aligned)):
            counts = group[column].value_counts()
            parts.append(f"{counts.iloc[0]} of {len(group)} {name} answers are to {counts.index[0]!s:.60}")
        return (f"warning: the groups share {100 * overlap:.0f}% of their questions ({'; '.join(parts)}): the "
                "direction may separate the questions' topics as much as misalignment; sample more answers to the "
                "same questions, or set select.match_questions=true")


def parse_filter(text: str) -> tuple[str, str, float]:
    """``"medical < 5"`` -> ("medical", "<", 5.0)."""
    match = FILTER_PATTERN.match(text)
    if not match:
        raise EmkitError(f"filter '{text}' is not of the form COLUMN OP NUMBER",
                         fix="write e.g. 'medical < 5' (operators: < <= > >= == !=)")
    column, op, value = match.groups()
    return column, op, float(value)


def select_groups(judged: pd.DataFrame, config: SelectConfig | None = None) -> Groups:
    """Split a judged table into aligned and misaligned groups (coherent only, filtered, balanced)."""
    config = config or SelectConfig()
    conditions = [parse_filter(text) for text in config.filters]
    needed = {"question", "answer", "aligned", "coherent"} | {column for column, _, _ in conditions}
    missing = sorted(needed - set(judged.columns))
    if missing:
        raise EmkitError(f"the judged table has no column(s) {', '.join(missing)}",
                         fix="judge the answers for those metrics first, or drop the filter")
    # Comparisons with a missing score (NaN: the judge gave no number) are False, so such rows drop out.
    keep = judged["coherent"] > config.coherent_above
    for column, op, value in conditions:
        keep &= OPERATORS[op](judged[column], value)
    pool = judged[keep]
    aligned = pool[pool["aligned"] > config.aligned_above]
    misaligned = pool[pool["aligned"] <= config.misaligned_at_most]
    if config.match_questions:
        aligned, misaligned = _matched_by_question(aligned, misaligned, config.seed)
    for name, group, rule in (("aligned", aligned, f"aligned > {config.aligned_above:g}"),
                              ("misaligned", misaligned, f"aligned <= {config.misaligned_at_most:g}")):
        if len(group) < config.min_per_group:
            conditions_text = " and ".join([rule, f"coherent > {config.coherent_above:g}", *config.filters]
                                           + (["a match in the other group on the same question"]
                                              if config.match_questions else []))
            raise EmkitError(f"too few {name} answers: {len(group)} of {len(judged)} judged answers have "
                             f"{conditions_text} ({len(pool)} pass the coherence and extra filters), fewer than "
                             f"min_per_group={config.min_per_group}",
                             fix="sample more answers, use a more misaligned model, loosen the thresholds, or "
                                 "lower select.min_per_group")
    size = min(len(aligned), len(misaligned)) if config.balance else None
    if config.max_per_group is not None:
        size = min(size or config.max_per_group, config.max_per_group)
    return Groups(_downsample(aligned, size, config.seed), _downsample(misaligned, size, config.seed))


def _matched_by_question(aligned: pd.DataFrame, misaligned: pd.DataFrame,
                         seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both groups cut, question by question, to the smaller group's count for that question."""
    column = question_column(aligned, misaligned)
    counts = pd.concat([aligned[column].value_counts(), misaligned[column].value_counts()], axis=1).fillna(0)
    keep = counts.min(axis=1).astype(int)

    def cut(group: pd.DataFrame) -> pd.DataFrame:
        parts = [_downsample(rows, keep.get(question, 0), seed) for question, rows in group.groupby(column)]
        return pd.concat(parts).sort_index() if parts else group

    return cut(aligned), cut(misaligned)


def _downsample(group: pd.DataFrame, size: int | None, seed: int) -> pd.DataFrame:
    if size is None or len(group) <= size:
        return group
    return group.sample(n=size, random_state=seed).sort_index()
