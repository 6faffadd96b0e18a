"""The judge interface: batch-first scoring of (question, answer) pairs on one metric at a time.

A judge turns a metric's prompt template (with ``{question}`` and ``{answer}`` placeholders)
and a batch of pairs into :class:`Judgement` values. Judges never touch the store: caching
and resuming live in :mod:`emkit.judges.run`, so every judge gets them for free.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

from emkit.errors import EmkitError
from emkit.records import Judgement, Pair

NO_SCORE_MASS = 0.25
"""The papers' rule: no score when less than this share of probability sits on numbers 0..100."""


ResultCallback = Callable[[int, Judgement], None]


class Judge(ABC):
    """Base class of every judge. Subclasses register themselves with :func:`register_judge`."""

    name: ClassVar[str]
    """Registry name (openai, local, offline, ...)."""
    version: ClassVar[str] = "1"
    """Bumped whenever the same inputs could get a different score; part of the cache key."""

    @property
    @abstractmethod
    def model(self) -> str:
        """The model behind the judge (e.g. gpt-4o-2024-08-06); part of the cache key."""

    @property
    def identity(self) -> str:
        """What the cache keys judgements by: judge kind, version and model."""
        return f"{self.name}/v{self.version}/{self.model}"

    def check_metric(self, metric: str) -> None:
        """Raise an :class:`EmkitError` if this judge cannot score ``metric`` (prompt-driven judges score any)."""
        return None

    @abstractmethod
    def score(self, metric: str, prompt: str, pairs: Sequence[Pair],
              on_result: ResultCallback | None = None) -> list[Judgement]:
        """Score every pair on ``metric`` using ``prompt``; call ``on_result(index, judgement)`` as each finishes."""

    def usage(self) -> dict[str, float]:
        """Running totals for this judge's calls (e.g. prompt/completion tokens, cost in USD)."""
        return {}

    def close(self) -> None:
        """Release clients, threads or models."""
        return None


JudgeFactory = Callable[..., Judge]
JUDGES: dict[str, JudgeFactory] = {}


def register_judge(name: str) -> Callable[[JudgeFactory], JudgeFactory]:
    """Class decorator: make a judge available by ``name`` (to ``--judge`` and the configs)."""

    def decorate(factory: JudgeFactory) -> JudgeFactory:
        JUDGES[name] = factory
        return factory

    return decorate


def fill_prompt(template: str, pair: Pair) -> str:
    """The judge prompt for one pair: the papers' templates use ``{question}`` and ``{answer}``."""
    return template.replace("{question}", pair.question).replace("{answer}", pair.answer)


def weighted_number_score(probabilities: dict[str, float]) -> Judgement:
    """The papers' aggregation: probability-weighted mean over tokens that are integers 0..100.

    ``probabilities`` maps candidate tokens (e.g. the top-20 logprobs, exponentiated) to their
    probability. Returns no score when less than :data:`NO_SCORE_MASS` sits on such numbers.
    """
    total, weighted = 0.0, 0.0
    for token, probability in probabilities.items():
        text = token.strip()
        if text.isdigit() and 0 <= int(text) <= 100:
            total += probability
            weighted += int(text) * probability
    detail = {"number_mass": round(total, 6)}
    if total < NO_SCORE_MASS:
        return Judgement(None, detail)
    return Judgement(weighted / total, detail)


def unknown_judge_error(name: str, builtin: dict[str, str]) -> EmkitError:
    known = sorted({*JUDGES, *builtin})
    return EmkitError(f"unknown judge '{name}'", fix=f"use one of {', '.join(known)}")
