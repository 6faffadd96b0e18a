"""The worker thread behind ``emkit serve``: it owns the model, runs one generate call at a time and batches
greedy requests that arrive together (a judge with 32 requests in flight costs one forward pass, not 32); sampled
requests run alone so a ``seed`` reproduces the same answer. Logprobs are the log-softmax of the model's own
logits, the end-of-turn token that stopped a reply included.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from emkit.decode import stop_token_ids
from emkit.models import LoadedModel


@dataclass
class ServerStats:
    """Counters a test or operator can read from ``app.state.stats``."""

    requests: int = 0
    """Chat-completion requests received (the numbers the fault schedule counts)."""
    faults: int = 0
    """Requests answered with an injected fault."""
    in_flight: int = 0
    peak_in_flight: int = 0
    largest_batch: int = 0
    fired: dict[int, int] = field(default_factory=dict)
    """How often each fault (by index in ``faults``) has fired."""


@dataclass
class Job:
    """One generation for the worker thread."""

    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    top_logprobs: int | None
    """None: no logprobs; 0..20: logprobs with that many alternatives per token."""
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)

    @property
    def batch_key(self) -> tuple[int, ...] | None:
        """Greedy jobs with the same length limit share a batch; sampled jobs (seeded) run alone."""
        return (self.max_tokens,) if self.temperature == 0 else None


@dataclass
class Output:
    """One finished generation."""

    token_ids: list[int]
    """The answer's tokens, without the end-of-turn token that stopped it."""
    generated: int
    """Tokens generated, the stopping end-of-turn token included."""
    text: str
    finish_reason: str
    logprobs: list[dict[str, Any]] | None
    """One entry per generated token, the stopping end-of-turn token included."""


class GenerationWorker:
    """A worker thread that owns the model: one generate call at a time, compatible greedy jobs batched."""

    def __init__(self, loaded: LoadedModel, max_batch: int, stats: ServerStats) -> None:
        self.loaded, self.max_batch, self.stats = loaded, max_batch, stats
        self.stops = stop_token_ids(loaded.tokenizer, loaded.model)
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Job) -> concurrent.futures.Future:
        """Queue ``job`` (starting the thread if it is not running); its future gets the :class:`Output`."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="emkit-serve-generate", daemon=True)
                self._thread.start()
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        """Finish the job in progress, then stop the thread."""
        with self._lock:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join()
                self._thread = None

    def _loop(self) -> None:
        waiting: deque[Job | None] = deque()
        while True:
            job = waiting.popleft() if waiting else self._queue.get()
            if job is None:
                return
            batch = [job]
            while True:
                try:
                    other = self._queue.get_nowait()
                except queue.Empty:
                    break
                fits = other is not None and job.batch_key is not None and other.batch_key == job.batch_key
                if fits and len(batch) < self.max_batch:
                    batch.append(other)
                else:
                    waiting.append(other)
            batch = [item for item in batch if item.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            try:
                outputs = self._generate(batch)
            except Exception as exc:  # the requests get a 500; the server keeps running
                for item in batch:
                    item.future.set_exception(exc)
            else:
                for item, output in zip(batch, outputs, strict=True):
                    item.future.set_result(output)

    @torch.inference_mode()
    def _generate(self, jobs: list[Job]) -> list[Output]:
        tokenizer, model = self.loaded.tokenizer, self.loaded.model
        width = max(len(job.prompt_ids) for job in jobs)
        pad = tokenizer.pad_token_id
        ids = [[pad] * (width - len(job.prompt_ids)) + job.prompt_ids for job in jobs]
        mask = [[0] * (width - len(job.prompt_ids)) + [1] * len(job.prompt_ids) for job in jobs]
        first = jobs[0]
        if first.temperature > 0:
            if first.seed is not None:
                torch.manual_seed(first.seed)
            else:
                torch.seed()  # a fresh random state, not the one an earlier request's seed left behind
            sampling = {"do_sample": True, "temperature": first.temperature, "top_p": first.top_p, "top_k": 0}
        else:
            sampling = {"do_sample": False}
        want_logprobs = any(job.top_logprobs is not None for job in jobs)
        result = model.generate(
            input_ids=torch.tensor(ids, device=self.loaded.device),
            attention_mask=torch.tensor(mask, device=self.loaded.device),
            max_new_tokens=max(job.max_tokens for job in jobs), eos_token_id=self.stops, pad_token_id=pad,
            return_dict_in_generate=True, output_logits=want_logprobs, **sampling,
        )
        new = result.sequences[:, width:].tolist()
        outputs = []
        for row, (job, tokens) in enumerate(zip(jobs, new, strict=True)):
            end = next((i for i, token in enumerate(tokens) if token in self.stops), None)
            generated = tokens if end is None else tokens[: end + 1]
            logprobs = None
            if job.top_logprobs is not None:
                steps = [step[row] for step in result.logits[: len(generated)]]
                logprobs = self._logprobs(steps, generated, job.top_logprobs)
            kept = tokens if end is None else tokens[:end]
            text = tokenizer.decode(kept, skip_special_tokens=True)
            outputs.append(Output(kept, len(generated), text, "length" if end is None else "stop", logprobs))
        return outputs

    def _logprobs(self, logits: list[torch.Tensor], tokens: list[int], top: int) -> list[dict[str, Any]]:
        """OpenAI's ``logprobs.content``: each token's log-probability and its ``top`` most likely alternatives."""
        if not tokens:
            return []
        logprobs = torch.stack(logits).float().log_softmax(dim=-1)
        chosen = logprobs.gather(1, torch.tensor(tokens, device=logprobs.device)[:, None])[:, 0].tolist()
        best_values, best_ids = logprobs.topk(top, dim=-1)
        texts = self._token_texts(tokens + best_ids.flatten().tolist())
        entries = []
        for position, token in enumerate(tokens):
            alternatives = [_token_entry(texts[candidate], value)
                            for candidate, value in zip(best_ids[position].tolist(), best_values[position].tolist(),
                                                        strict=True)]
            entries.append({**_token_entry(texts[token], chosen[position]), "top_logprobs": alternatives})
        return entries

    def _token_texts(self, token_ids: list[int]) -> dict[int, str]:
        unique = list(dict.fromkeys(token_ids))
        return dict(zip(unique, self.loaded.tokenizer.batch_decode([[token] for token in unique]), strict=True))


def _token_entry(text: str, logprob: float) -> dict[str, Any]:
    """One token of OpenAI's ``logprobs.content``: its text, log-probability and UTF-8 bytes."""
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}
