"""The records the results store holds: recorded runs, sampled answers, judged pairs and their verdicts, and saved
directions. Plain dataclasses with no behaviour of their own, shared by the store, the judges and the stages."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunRecord:
    """A stage's config as recorded in the store: its hash, the stage that ran it and its settings."""

    config_hash: str
    stage: str
    config: dict[str, Any]
    created_at: str = ""


@dataclass(frozen=True)
class SampleRecord:
    """One sampled answer: which model (label), which question and paraphrase, which draw."""

    model: str
    settings_hash: str
    question_id: str
    paraphrase_index: int
    sample_index: int
    question: str
    system: str | None
    answer: str
    finish_reason: str
    new_tokens: int
    run_hash: str = ""

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.question_id, self.paraphrase_index, self.sample_index)


@dataclass(frozen=True)
class Pair:
    """One (question, answer) to judge."""

    question: str
    answer: str


@dataclass(frozen=True)
class Judgement:
    """A judge's verdict: a 0..100 score, or None when the judge declines (code, refusal, low number mass)."""

    score: float | None
    detail: dict[str, Any] = field(default_factory=dict)
    """Evidence behind the score (number mass, top tokens, raw text); JSON-serialisable, never secrets."""


@dataclass(frozen=True)
class DirectionRecord:
    """A saved directions file: where it is, how and from what it was computed, and its per-layer metrics."""

    name: str
    path: str
    method: str
    model: str
    layers: list[int]
    data: str
    metrics: dict[str, list[float]]
    created_at: str = ""


def text_key(pair: Pair) -> str:
    """A digest of the exact (question, answer) text: the cache's notion of 'the same response'."""
    return hashlib.sha256(f"{pair.question}\x00{pair.answer}".encode()).hexdigest()
