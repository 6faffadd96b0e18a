"""``sample.backend: api``: answers from any OpenAI-compatible chat-completions endpoint.

API models fine-tuned on the provider's side (the papers' GPT-4o organisms) and open models behind
vLLM, llama.cpp or ``emkit serve`` are sampled the way the papers sample them: one chat completion
per answer, with the question set's system prompt and paraphrase as the messages, the config's
temperature, top_p and max_new_tokens, and a seed fixed by the run's seed and the answer's key
(endpoints that honour ``seed`` then give a resumed run the answers an uninterrupted one would
have). The endpoint applies its own chat template.

Requests run concurrently (``api.concurrency`` in flight) on an event loop in a helper thread and
are retried like the ``openai`` judge's: rate limits, server errors, timeouts and malformed replies,
with exponential backoff and jitter, honouring Retry-After. Each answer reaches the store the
moment it arrives, so a killed run loses only the requests in flight. The key is read from the
environment only and never enters errors, logs or the store.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import openai
from openai.types.chat import ChatCompletion

from emkit.decode import Generated
from emkit.errors import EmkitError
from emkit.net import (
    RetriesExhausted,
    describe_api_error,
    first_choice,
    read_api_key,
    refused_request,
    with_retries,
)
from emkit.progress import progress_counter
from emkit.sampling.config import SampleConfig
from emkit.sampling.prompts import PromptItem, item_seed

T = TypeVar("T")
FIRST_BACKOFF_S = 1.0
"""The first retry's delay before jitter; it doubles with each further retry, up to emkit.net.MAX_BACKOFF_S."""
_FINISHED = object()
"""Queued by a worker that has nothing more to do."""


def generate_answers(config: SampleConfig, items: list[PromptItem],
                     show_progress: bool) -> Iterator[tuple[PromptItem, Generated]]:
    """Yield each item with its answer as soon as its request completes (in completion order)."""
    sampler = APISampler(config)
    with progress_counter(len(items), show_progress, f"sample {config.label}") as advance:
        for answer in sampler.answers(items):
            yield answer
            advance(1)


class APISampler:
    """One endpoint, one client and one event loop, kept in a helper thread for as long as answers are drawn."""

    def __init__(self, config: SampleConfig) -> None:
        self.config, self.settings = config, config.api
        self.endpoint = self.settings.endpoint()
        self._api_key = self._read_key()

    def answers(self, items: list[PromptItem]) -> Iterator[tuple[PromptItem, Generated]]:
        """Each item with its answer, as answers arrive; after a request gives up, those in flight still arrive,
        then its error is raised. Stopping the iteration early cancels what is in flight.

        The event loop runs only while this waits for the next answer (in the helper thread, so it also works
        where the caller's thread runs a loop of its own, as in a notebook).
        """
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="emkit-sample-api")
        runner = asyncio.Runner()

        def run(coroutine: Coroutine[Any, Any, T]) -> T:
            return pool.submit(runner.run, coroutine).result()

        try:
            client, results, workers = run(self._start(items))
            failures: list[EmkitError] = []
            try:
                running = len(workers)
                while running:
                    entry = run(results.get())
                    if entry is _FINISHED:
                        running -= 1
                    elif isinstance(entry, EmkitError):
                        failures.append(entry)
                    else:
                        yield entry
            finally:
                run(_stop(client, workers))
            if failures:
                raise failures[0]
        finally:
            pool.submit(runner.close).result()
            pool.shutdown()

    async def _start(self, items: list[PromptItem]):
        client = openai.AsyncOpenAI(base_url=self.settings.url(), api_key=self._api_key, max_retries=0,
                                    timeout=self.settings.timeout_s)
        results: asyncio.Queue = asyncio.Queue()
        todo = iter(items)
        stop = asyncio.Event()  # set once a request has given up: no new ones start

        async def worker() -> None:
            try:
                for item in todo:
                    if stop.is_set():
                        return
                    try:
                        results.put_nowait((item, await self._answer(client, item)))
                    except EmkitError as exc:
                        stop.set()
                        results.put_nowait(exc)
                        return
            finally:
                results.put_nowait(_FINISHED)

        workers = [asyncio.create_task(worker()) for _ in range(min(self.settings.concurrency, len(items)))]
        return client, results, workers

    async def _answer(self, client: openai.AsyncOpenAI, item: PromptItem) -> Generated:
        """One answer, retrying transient failures."""
        system = item.question.system
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user",
                                                                                    "content": item.text}]
        body = {"model": self.config.model, "messages": messages, "temperature": self.config.temperature,
                "top_p": self.config.top_p, "max_tokens": self.config.max_new_tokens,
                "seed": item_seed(self.config.seed, item)}

        async def send() -> Generated:
            return _generated(await client.post("/chat/completions", body=body, cast_to=ChatCompletion))

        tries = self.settings.max_retries + 1
        try:
            return await with_retries(send, tries, FIRST_BACKOFF_S, self._refused)
        except RetriesExhausted as exhausted:
            raise EmkitError(f"the sampling endpoint {self.endpoint} failed {tries} times in a row; last error: "
                             f"{self._describe(exhausted.last)}",
                             fix="check the endpoint and its rate limits (or raise api.max_retries), then rerun: "
                                 "finished answers are stored and will not be requested again") from None

    def _read_key(self) -> str:
        return read_api_key(self.settings.api_key_env, self.endpoint, "backend=api", "api.api_key_env")

    def _refused(self, exc: openai.APIStatusError) -> EmkitError:
        return refused_request(f"the sampling endpoint {self.endpoint}", exc, self._describe(exc),
                               self.settings.api_key_env,
                               not_found=f"check the model id '{self.config.model}' and api.base_url",
                               otherwise="check the sampling settings against what the endpoint accepts")

    def _describe(self, error: Exception | None) -> str:
        return describe_api_error(error, self.settings.timeout_s, self._api_key)


async def _stop(client: openai.AsyncOpenAI, workers: list[asyncio.Task]) -> None:
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    await client.close()


def _generated(completion: Any) -> Generated:
    """The answer in a completion, as emkit's decoder would store it."""
    choice = first_choice(completion)
    tokens = getattr(getattr(completion, "usage", None), "completion_tokens", None)
    return Generated((choice.message.content or "").strip(), choice.finish_reason or "stop", int(tokens or 0))
