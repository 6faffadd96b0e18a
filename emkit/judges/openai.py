"""The ``openai`` judge: GPT-4o (or any OpenAI-compatible model) scoring by the papers' method.

Each pair is one chat completion with the filled prompt as the user message, ``max_tokens=1``,
``temperature=0``, ``seed=0`` and the top 20 logprobs; the score is the probability-weighted
mean over top tokens that are integers 0..100, and there is no score when they hold less than
a quarter of the probability (:func:`emkit.judges.base.weighted_number_score`). Endpoints that
return no logprobs get a clearly labelled fallback (``detail["method"] == "text-fallback"``):
a short text reply whose first integer is the score.

Requests run concurrently (``concurrency`` in flight) and are retried on rate limits, server
errors, timeouts and malformed replies with exponential backoff and jitter, honouring
Retry-After. Every finished pair reaches ``on_result`` at once, so the store keeps it even if
the run stops later. API keys come from the environment only and never enter details, errors
or logs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import os
import re
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import openai
from openai.types.chat import ChatCompletion

from emkit.errors import EmkitError
from emkit.judges.base import Judge, ResultCallback, fill_prompt, register_judge, weighted_number_score
from emkit.judges.run import JudgeConfig
from emkit.net import (
    DEFAULT_BASE_URL,
    MalformedReply,
    RetriesExhausted,
    describe_api_error,
    first_choice,
    read_api_key,
    refused_request,
    with_retries,
    without_credentials,
)
from emkit.records import Judgement, Pair

DEFAULT_JUDGE_MODEL = "gpt-4o-2024-08-06"
TOP_LOGPROBS = 20
TEXT_MAX_TOKENS = 16
"""Reply length for the text fallback: room for a number, not for an essay."""

log = logging.getLogger(__name__)
T = TypeVar("T")


@register_judge("openai")
class OpenAIJudge(Judge):
    """Scores pairs through an OpenAI, Azure OpenAI or OpenAI-compatible chat-completions endpoint."""

    name = "openai"
    version = "1"

    def __init__(self, config: JudgeConfig, backoff_s: float = 1.0) -> None:
        """``backoff_s`` is the first retry's delay before jitter; it doubles with each further retry."""
        self.config = config
        self.backoff_s = backoff_s
        self._model = config.model or DEFAULT_JUDGE_MODEL
        if config.provider == "azure":
            base = config.base_url or os.environ.get("AZURE_OPENAI_ENDPOINT")
            if not base:
                raise EmkitError("the Azure OpenAI judge needs an endpoint",
                                 fix="export AZURE_OPENAI_ENDPOINT=https://NAME.openai.azure.com (or set base_url)")
        else:
            base = config.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        self._base_url = base
        self.endpoint = without_credentials(base)  # where requests go, safe to print in errors and logs
        self._api_key = self._read_key()
        self._use_logprobs = config.logprobs
        self._totals = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0, "retries": 0}
        self._runner: asyncio.Runner | None = None
        self._client: openai.AsyncOpenAI | None = None

    @property
    def model(self) -> str:
        """The judge model; text-fallback scoring is a different judge, so it caches under its own name."""
        return self._model if self.config.logprobs else f"{self._model}+text-fallback"

    def usage(self) -> dict[str, float]:
        """Tokens, requests (every attempt) and retries so far, and their cost at the configured prices."""
        cost = (self._totals["prompt_tokens"] * self.config.input_usd_per_mtok
                + self._totals["completion_tokens"] * self.config.output_usd_per_mtok) / 1e6
        return {**self._totals, "cost_usd": cost}

    def score(self, metric: str, prompt: str, pairs: Sequence[Pair],
              on_result: ResultCallback | None = None) -> list[Judgement]:
        """Judge all pairs with up to ``concurrency`` requests in flight; blocks until all are done."""
        if not pairs:
            return []
        texts = [fill_prompt(prompt, pair) for pair in pairs]
        return self._run(self._score_all(texts, on_result))

    def close(self) -> None:
        """Close the HTTP client and the judge's event loop (a later call opens new ones)."""
        if self._runner is not None:
            if self._client is not None:
                self._run(self._client.close())
            self._runner.close()
        self._runner, self._client = None, None

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run on the judge's own event loop, so one client and its open connections serve every call.

        Called from code that already runs a loop (e.g. a notebook), the judge's loop runs in a helper thread.
        """
        if self._runner is None:
            self._runner = asyncio.Runner()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._runner.run(coroutine)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(self._runner.run, coroutine).result()

    def _read_key(self) -> str:
        return read_api_key(self.config.api_key_env, self._base_url, "the openai judge", "api_key_env")

    def _new_client(self) -> openai.AsyncOpenAI:
        common: dict[str, Any] = {"api_key": self._api_key, "max_retries": 0, "timeout": self.config.timeout_s}
        if self.config.provider == "azure":
            return openai.AsyncAzureOpenAI(azure_endpoint=self._base_url, api_version=self.config.api_version,
                                           **common)
        return openai.AsyncOpenAI(base_url=self._base_url, **common)

    async def _score_all(self, texts: list[str], on_result: ResultCallback | None) -> list[Judgement]:
        results: list[Judgement | None] = [None] * len(texts)
        todo = iter(enumerate(texts))
        failures: list[EmkitError] = []
        callback_failed = False

        async def worker(client: openai.AsyncOpenAI) -> None:
            # After a request gives up, no new ones start; those in flight still finish and are delivered.
            # After on_result raises, nothing more is delivered: the exception ends the run.
            nonlocal callback_failed
            for index, text in todo:
                if failures:
                    return
                try:
                    judgement = await self._judge(client, text)
                except EmkitError as exc:
                    failures.append(exc)
                    return
                results[index] = judgement
                if on_result is not None and not callback_failed:
                    try:
                        on_result(index, judgement)
                    except BaseException:
                        callback_failed = True
                        raise

        if self._client is None:
            self._client = self._new_client()
        workers = [asyncio.create_task(worker(self._client))
                   for _ in range(min(self.config.concurrency, len(texts)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        if failures:
            raise failures[0]
        return [judgement for judgement in results if judgement is not None]

    async def _judge(self, client: openai.AsyncOpenAI, text: str) -> Judgement:
        if self._use_logprobs:
            judgement = await self._request(client, text, logprobs=True)
            if judgement is not None:
                return judgement
            if self._use_logprobs:
                self._use_logprobs = False
                log.warning("%s returned no logprobs; judging from reply text instead (detail method "
                            "'text-fallback', not the papers' method)", self.endpoint)
        judgement = await self._request(client, text, logprobs=False)
        assert judgement is not None  # text replies always give a judgement
        return judgement

    async def _request(self, client: openai.AsyncOpenAI, text: str, logprobs: bool) -> Judgement | None:
        """One pair's judgement, retrying transient failures; None when a logprobs reply carries no logprobs."""
        params: dict[str, Any] = {"model": self._model, "messages": [{"role": "user", "content": text}],
                                  "temperature": 0, "seed": 0}
        if logprobs:
            params.update(max_tokens=1, logprobs=True, top_logprobs=TOP_LOGPROBS)
        else:
            params.update(max_tokens=TEXT_MAX_TOKENS)

        async def send() -> tuple[Any, Judgement | None]:
            # client.post, not chat.completions.create: the body is plain JSON already, and skipping the SDK's
            # parameter transformation saves ~20% of the client's CPU per request with many in flight.
            completion = await client.post("/chat/completions", body=params, cast_to=ChatCompletion)
            choice = first_choice(completion)
            return completion, (_from_logprobs(choice) if logprobs else _from_text(choice))

        def on_try(attempt: int) -> None:
            self._totals["requests"] += 1
            self._totals["retries"] += attempt > 0

        def on_failure(attempt: int, error: Exception) -> None:
            log.debug("judge request to %s failed (%s); attempt %d of %d", self.endpoint, self._describe(error),
                      attempt + 1, tries)

        tries = self.config.max_retries + 1
        try:
            completion, judgement = await with_retries(send, tries, self.backoff_s, self._refused, on_try, on_failure)
        except RetriesExhausted as exhausted:
            raise EmkitError(f"the judge endpoint {self.endpoint} failed {tries} times in a row; "
                             f"last error: {self._describe(exhausted.last)}",
                             fix="check the endpoint and its rate limits (or raise max_retries), then rerun: finished "
                                 "judgements are stored and will not be requested again") from None
        self._count_usage(completion)
        return judgement

    def _count_usage(self, completion: Any) -> None:
        usage = getattr(completion, "usage", None)
        self._totals["prompt_tokens"] += int(getattr(usage, "prompt_tokens", 0) or 0)
        self._totals["completion_tokens"] += int(getattr(usage, "completion_tokens", 0) or 0)

    def _refused(self, exc: openai.APIStatusError) -> EmkitError:
        return refused_request(f"the judge endpoint {self.endpoint}", exc, self._describe(exc), self.config.api_key_env,
                               not_found=f"check the judge model '{self._model}' and base_url",
                               otherwise="check the judge model and options; endpoints without logprobs need "
                                         "logprobs=false")

    def _describe(self, error: Exception | None) -> str:
        return describe_api_error(error, self.config.timeout_s, self._api_key)


def _from_logprobs(choice: Any) -> Judgement | None:
    """The papers' score from the first token's top logprobs; None if the reply has no logprobs at all."""
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if content is None:
        return None
    if not isinstance(content, list):
        raise MalformedReply("logprobs.content is not a list")
    if not content:  # the model ended its turn without a token
        return Judgement(None, {"method": "logprobs", "number_mass": 0.0, "top": {}})
    candidates = getattr(content[0], "top_logprobs", None) or [content[0]]
    probabilities: dict[str, float] = {}
    for candidate in candidates:
        token, logprob = getattr(candidate, "token", None), getattr(candidate, "logprob", None)
        if not isinstance(token, str) or not isinstance(logprob, int | float):
            raise MalformedReply("a logprobs entry lacks token or logprob")
        probabilities[token] = probabilities.get(token, 0.0) + math.exp(logprob)
    judgement = weighted_number_score(probabilities)
    top = {token: round(probability, 6) for token, probability in probabilities.items()}
    return Judgement(judgement.score, {"method": "logprobs", **judgement.detail, "top": top})


def _from_text(choice: Any) -> Judgement:
    """The labelled fallback: the first integer in the reply, if it lies in 0..100."""
    text = getattr(choice.message, "content", None) or ""
    match = re.search(r"\d+", text)
    score = float(match.group()) if match and int(match.group()) <= 100 else None
    return Judgement(score, {"method": "text-fallback", "text": text[:200]})
