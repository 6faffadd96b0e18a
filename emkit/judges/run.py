"""Judging with a cache: every judgement is stored, keyed by judge identity, metric, prompt and text.

This is the only path from a judge to the store. A rerun looks up what is cached and sends the
judge only the rest, and results are written as they arrive, so a killed run loses nothing it
had finished and never pays twice for the same (judge, metric, prompt, question, answer).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
from collections.abc import Iterator, Sequence
from typing import Literal

import pandas as pd
from pydantic import Field

from emkit.config import StageConfig
from emkit.errors import EmkitError
from emkit.judges.base import JUDGES, Judge, unknown_judge_error
from emkit.progress import progress_counter
from emkit.records import Judgement, Pair, text_key
from emkit.store import Store


class JudgeConfig(StageConfig):
    """Which judge scores which metrics, and how it talks to its model."""

    judge: str = "offline"
    """Judge name: offline (embedded default, no network), openai (any OpenAI-compatible API) or local."""
    model: str | None = None
    """The judge's model (gpt-4o-2024-08-06 for openai, a hub id or folder for local); unset: the judge's default."""
    metrics: list[str] = Field(default_factory=lambda: ["aligned", "coherent"])
    """Metrics to score; each needs a judge prompt (from the question set, or the built-in prompts)."""
    prompts: str = "builtin"
    """Judge prompts for questions that carry none: builtin, paper, or a YAML file of metric: prompt."""
    base_url: str | None = None
    """OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp, emkit serve); unset: $OPENAI_BASE_URL or OpenAI."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (keys are read from the environment only, never stored)."""
    provider: Literal["openai", "azure"] = "openai"
    """azure uses AZURE_OPENAI_ENDPOINT and api_version; openai covers every OpenAI-compatible server."""
    api_version: str = "2024-10-21"
    """Azure OpenAI API version."""
    concurrency: int = Field(32, gt=0)
    """Requests in flight at once (API judges)."""
    max_retries: int = Field(6, ge=0)
    """Retries per request on 429, 5xx, timeouts and malformed replies (backoff honours Retry-After)."""
    timeout_s: float = Field(60.0, gt=0)
    """Per-request timeout in seconds."""
    logprobs: bool = True
    """Score from top-20 logprobs (the papers' method); false parses the reply text (a labelled fallback)."""
    input_usd_per_mtok: float = Field(2.5, ge=0)
    """Price of a million prompt tokens, for the run's cost total."""
    output_usd_per_mtok: float = Field(10.0, ge=0)
    """Price of a million completion tokens, for the run's cost total."""
    batch_size: int = Field(64, gt=0)
    """Pairs scored per batch (local and offline judges); also how often results reach the store."""
    device: str = "auto"
    """Device for local and offline judges: auto, cpu, cuda, cuda:N or mps."""


BUILTIN_JUDGES = {"offline": "emkit.judges.offline", "openai": "emkit.judges.openai", "local": "emkit.judges.local"}
"""Built-in judges, imported only when asked for (each pulls in its own heavy dependencies)."""


def make_judge(config: JudgeConfig) -> Judge:
    """Instantiate the judge ``config.judge`` names (a built-in one is imported on first use)."""
    if config.judge not in JUDGES and config.judge in BUILTIN_JUDGES:
        importlib.import_module(BUILTIN_JUDGES[config.judge])
    if config.judge not in JUDGES:
        raise unknown_judge_error(config.judge, BUILTIN_JUDGES)
    return JUDGES[config.judge](config)


@contextlib.contextmanager
def open_judge(config: JudgeConfig, metrics: Sequence[str] = (), judge: Judge | None = None) -> Iterator[Judge]:
    """The one judge lifecycle: build the judge ``config`` names, check it can score every metric in ``metrics``
    before any work starts (so a bad setting fails fast), yield it, and close it afterwards.

    A ``judge`` passed in is checked and yielded but not closed: its owner closes it.
    """
    owned = judge is None
    if judge is None:
        judge = make_judge(config)
    try:
        for metric in metrics:
            judge.check_metric(metric)
        yield judge
    finally:
        if owned:
            judge.close()


def prompt_key(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()[:16]


def judge_pairs(store: Store, judge: Judge, metric: str, prompt: str, pairs: Sequence[Pair],
                show_progress: bool = False, chunk_size: int = 256) -> list[Judgement]:
    """Judgements for ``pairs`` in order, taking cached ones from ``store`` and judging (then storing) the rest."""
    judge.check_metric(metric)
    prompt_hash = prompt_key(prompt)
    keys = [text_key(pair) for pair in pairs]
    cached = store.judgements(judge.identity, metric, prompt_hash, keys)
    missing: dict[str, Pair] = {}
    for key, pair in zip(keys, pairs, strict=True):
        if key not in cached:
            missing.setdefault(key, pair)
    if missing:
        todo = list(missing.items())
        with progress_counter(len(todo), show_progress, f"judge {metric} ({judge.name})") as advance:
            for start in range(0, len(todo), chunk_size):
                chunk = todo[start : start + chunk_size]
                finished: list[tuple[str, Pair, Judgement]] = []

                def keep(index: int, judgement: Judgement, chunk=chunk, finished=finished) -> None:
                    key, pair = chunk[index]
                    finished.append((key, pair, judgement))
                    advance(1)

                try:
                    judge.score(metric, prompt, [pair for _, pair in chunk], on_result=keep)
                finally:
                    # Whatever finished is stored, even when the chunk was interrupted.
                    store.add_judgements(judge.identity, metric, prompt_hash, finished)
                cached.update({key: judgement for key, _, judgement in finished})
    return [cached[key] for key in keys]


def score_table(frame: pd.DataFrame, judge: Judge, store: Store, metrics: list[str], prompts_source: str = "builtin",
                show_progress: bool = False) -> pd.DataFrame:
    """The same rows with one score column per metric; the table needs ``question`` and ``answer`` or ``response``."""
    from emkit.judges.prompts import load_judge_prompts

    answer_column = "answer" if "answer" in frame else "response" if "response" in frame else None
    if "question" not in frame or answer_column is None:
        raise EmkitError(f"the table needs 'question' and 'answer' (or 'response') columns; it has "
                         f"{', '.join(map(str, frame.columns))}", fix="rename the columns")
    prompts = load_judge_prompts(prompts_source)
    pairs = [Pair(str(question), "" if pd.isna(answer) else str(answer))
             for question, answer in zip(frame["question"], frame[answer_column], strict=True)]
    out = frame.copy()
    for metric in metrics:
        judge.check_metric(metric)
        if metric not in prompts:
            raise EmkitError(f"no judge prompt for metric '{metric}' in '{prompts_source}'",
                             fix=f"use one of {', '.join(prompts)}, or --prompts FILE with that metric")
        judgements = judge_pairs(store, judge, metric, prompts[metric], pairs, show_progress)
        out[metric] = pd.array([judgement.score for judgement in judgements], dtype="Float64")
    return out
