"""An OpenAI-compatible HTTP server for any local chat model with its LoRA adapters.

``emkit serve`` makes an organism (or any judge model) reachable by every OpenAI-compatible
tool, including emkit's own ``openai`` judge: ``GET /v1/models`` and ``POST /v1/chat/completions``
with logprobs and top_logprobs (log-softmax of the model's own logits; the end-of-turn token
that stopped a reply is included, so a judge whose model ends its turn at once still sees the
distribution it chose from), usage counts and ``stream: true`` (OpenAI's chunk format, sent once
the reply is complete). Greedy requests that arrive together are generated in one batch (a
judge with 32 requests in flight costs one forward pass, not 32); sampled requests run alone so
a ``seed`` reproduces the same answer. Fields the server does not implement (penalties, tools)
are ignored; ``n`` > 1 and ``stop`` are refused. A deterministic fault schedule (``faults``)
turns the server into a misbehaving API for testing clients' retries.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import json
import os
import queue
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from emkit.config import StageConfig
from emkit.decode import stop_token_ids
from emkit.judges.openai import is_loopback
from emkit.models import DEFAULT_MODEL, LoadedModel, load_model

MAX_TOP_LOGPROBS = 20
"""OpenAI's ceiling for top_logprobs."""


class Fault(BaseModel):
    """One injected failure on a deterministic schedule of chat-completion request numbers (1, 2, 3, ...).

    The fault fires on request ``n`` when ``n > after`` and ``(n - after) % every == 0``, at most
    ``times`` times. Kinds: ``rate_limit`` (429 with a Retry-After header), ``server_error`` (500),
    ``slow`` (waits ``seconds``, then answers normally: a client timeout shorter than that fails),
    ``invalid_json`` (200 with a truncated JSON body) and ``no_choices`` (200, valid JSON, no choices).
    When several faults match a request, the first listed wins.
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    kind: Literal["rate_limit", "server_error", "slow", "invalid_json", "no_choices"]
    """What goes wrong."""
    every: int = Field(1, gt=0)
    """Fire on every Nth request (counted after ``after``)."""
    after: int = Field(0, ge=0)
    """Requests answered normally before the schedule starts."""
    times: int | None = Field(None, gt=0)
    """Fire at most this many times; unset means no limit."""
    retry_after: int | float | str | None = None
    """Retry-After header sent with rate_limit (seconds or an HTTP date); unset sends none."""
    seconds: float = Field(1.0, ge=0)
    """Delay of a slow response."""


class ServeConfig(StageConfig):
    """Which model to serve, where, and with which limits."""

    model: str = DEFAULT_MODEL
    """Base model: an embedded name, a hub id, or a local folder."""
    adapters: list[str] = Field(default_factory=list)
    """LoRA adapter folders applied on top of the base model (all active)."""
    served_name: str | None = None
    """Model id clients ask for (and /v1/models lists); unset uses the model field as given."""
    host: str = "127.0.0.1"
    """Interface to bind; anything but loopback exposes the model to the network."""
    port: int = Field(8000, gt=0, le=65535)
    """TCP port."""
    api_key_env: str = "EMKIT_SERVE_API_KEY"
    """Environment variable with the key clients must send (Authorization: Bearer KEY); if unset, no key is needed."""
    max_tokens: int = Field(512, gt=0)
    """Largest max_tokens a request may ask for, and the default when it gives none."""
    max_batch: int = Field(32, gt=0)
    """Greedy requests generated together in one batch."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    dtype: str = "auto"
    """auto (bf16 where fast), float32, bfloat16 or float16."""
    trust_remote_code: bool = False
    """Allow model code from the hub."""
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    """uvicorn's log level: critical, error, warning, info, debug or trace."""
    faults: list[Fault] = Field(default_factory=list)
    """Injected failures for testing clients, e.g. [{kind: rate_limit, every: 3, retry_after: 1}]; empty normally."""


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


class _APIError(Exception):
    """An error answered in OpenAI's JSON shape."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class _Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if any(part.get("type") != "text" for part in self.content):
            raise _APIError(400, "only text content parts are supported", param="messages")
        return "".join(str(part.get("text", "")) for part in self.content)


class _StreamOptions(BaseModel):
    include_usage: bool = False


class _ChatRequest(BaseModel):
    """The subset of OpenAI's chat-completion request the server honours; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[_Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None
    n: int = 1
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    stop: str | list[str] | None = None


@dataclass
class _Job:
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
class _Output:
    token_ids: list[int]
    """The answer's tokens, without the end-of-turn token that stopped it."""
    generated: int
    """Tokens generated, the stopping end-of-turn token included."""
    text: str
    finish_reason: str
    logprobs: list[dict[str, Any]] | None
    """One entry per generated token, the stopping end-of-turn token included."""


class _Generator:
    """A worker thread that owns the model: one generate call at a time, compatible greedy jobs batched."""

    def __init__(self, loaded: LoadedModel, max_batch: int, stats: ServerStats) -> None:
        self.loaded, self.max_batch, self.stats = loaded, max_batch, stats
        self.stops = stop_token_ids(loaded.tokenizer, loaded.model)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: _Job) -> concurrent.futures.Future:
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
        waiting: deque[_Job | None] = deque()
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
    def _generate(self, jobs: list[_Job]) -> list[_Output]:
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
            outputs.append(_Output(kept, len(generated), text, "length" if end is None else "stop", logprobs))
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
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}


class _FaultSchedule:
    def __init__(self, faults: list[Fault], stats: ServerStats) -> None:
        self.faults, self.stats = faults, stats

    def pick(self, number: int) -> Fault | None:
        for index, fault in enumerate(self.faults):
            fired = self.stats.fired.get(index, 0)
            due = number > fault.after and (number - fault.after) % fault.every == 0
            if due and (fault.times is None or fired < fault.times):
                self.stats.fired[index] = fired + 1
                self.stats.faults += 1
                return fault
        return None


async def _apply_fault(fault: Fault) -> Response | None:
    """The injected response, or None for ``slow`` (which delays and then lets the request through)."""
    if fault.kind == "slow":
        await asyncio.sleep(fault.seconds)
        return None
    if fault.kind == "rate_limit":
        headers = {"retry-after": str(fault.retry_after)} if fault.retry_after is not None else None
        return _APIError(429, "injected fault: rate limit", kind="rate_limit_error", code="rate_limit_exceeded",
                         headers=headers).response()
    if fault.kind == "server_error":
        return _APIError(500, "injected fault: server error", kind="server_error").response()
    if fault.kind == "invalid_json":
        return Response('{"id": "chatcmpl-fault", "choices": [', media_type="application/json")
    return Response(json.dumps({"id": "chatcmpl-fault", "object": "chat.completion"}), media_type="application/json")


def create_app(config: ServeConfig, loaded: LoadedModel | None = None) -> FastAPI:
    """The app serving ``config.model`` (or an already loaded model); run it with uvicorn or :func:`background`."""
    loaded = loaded or load_model(config.model, config.adapters, config.device, config.dtype,
                                  config.trust_remote_code)
    served_name = config.served_name or config.model
    api_key = os.environ.get(config.api_key_env) or None
    stats = ServerStats()
    generator = _Generator(loaded, config.max_batch, stats)
    schedule = _FaultSchedule(config.faults, stats)
    context_length = getattr(loaded.model.config, "max_position_embeddings", None)
    created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(generator.close)

    app = FastAPI(title="emkit serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.stats = stats
    app.state.config = config

    @app.exception_handler(_APIError)
    async def api_error(_request: Request, exc: _APIError):
        return exc.response()

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException):
        return _APIError(exc.status_code, str(exc.detail)).response()

    @app.exception_handler(ClientDisconnect)
    async def client_gone(_request: Request, _exc: ClientDisconnect):
        return Response(status_code=499)  # nobody is listening; nginx's code for "client closed request"

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception):
        return _APIError(500, f"internal error: {type(exc).__name__}: {exc}", kind="server_error").response()

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        if api_key is not None:
            header = request.headers.get("authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
                return _APIError(401, "missing or incorrect API key (send Authorization: Bearer <key>)",
                                 code="invalid_api_key").response()
        return await call_next(request)

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": served_name, "object": "model", "created": created,
                                            "owned_by": "emkit"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        stats.requests += 1
        number = stats.requests
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        try:
            raw = await request.body()
            fault = schedule.pick(number)
            if fault is not None:
                injected = await _apply_fault(fault)
                if injected is not None:
                    return injected
            body = _parse_request(raw)
            if body.model != served_name:
                raise _APIError(404, f"the model '{body.model}' does not exist (this server has '{served_name}')",
                                param="model", code="model_not_found")
            job = _make_job(body, loaded, config.max_tokens, context_length)
            output = await asyncio.wrap_future(generator.submit(job))
        finally:
            stats.in_flight -= 1
        reply = _Reply(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), served_name, len(job.prompt_ids), output)
        if body.stream:
            usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(reply.chunks(loaded, usage), media_type="text/event-stream")
        return JSONResponse(reply.completion())

    return app


def _parse_request(raw: bytes) -> _ChatRequest:
    try:
        body = _ChatRequest.model_validate_json(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(part) for part in error["loc"]) or None
        raise _APIError(400, f"{param or 'body'}: {error['msg']}", param=param) from None
    if body.n != 1:
        raise _APIError(400, "only n=1 is supported", param="n")
    if body.top_logprobs is not None and not body.logprobs:
        raise _APIError(400, "top_logprobs needs logprobs=true", param="top_logprobs")
    if body.stop:
        raise _APIError(400, "stop sequences are not supported; generation stops at the end of the turn",
                        param="stop")
    return body


def _make_job(body: _ChatRequest, loaded: LoadedModel, limit: int, context_length: int | None) -> _Job:
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    try:
        prompt = loaded.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # templates raise their own errors (e.g. roles out of order)
        raise _APIError(400, f"the chat template rejected the messages: {exc}", param="messages") from None
    prompt_ids = loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    asked = body.max_completion_tokens or body.max_tokens
    if asked is not None and asked > limit:
        raise _APIError(400, f"max_tokens {asked} is above this server's limit of {limit}", param="max_tokens")
    max_tokens = asked or limit
    if context_length is not None:
        room = context_length - len(prompt_ids)
        if room < 1 or (asked is not None and asked > room):
            raise _APIError(400, f"the prompt ({len(prompt_ids)} tokens) plus max_tokens ({max_tokens}) exceeds "
                                 f"the model's context of {context_length} tokens", param="messages")
        max_tokens = min(max_tokens, room)
    top = (body.top_logprobs or 0) if body.logprobs else None
    return _Job(prompt_ids, max_tokens, body.temperature, body.top_p, body.seed, top)


@dataclass
class _Reply:
    """One finished generation, rendered as a chat completion or as SSE chunks."""

    id: str
    created: int
    model: str
    prompt_tokens: int
    output: _Output

    def usage(self) -> dict[str, int]:
        completion = self.output.generated
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}

    def completion(self) -> dict[str, Any]:
        logprobs = {"content": self.output.logprobs} if self.output.logprobs is not None else None
        choice = {"index": 0, "message": {"role": "assistant", "content": self.output.text},
                  "logprobs": logprobs, "finish_reason": self.output.finish_reason}
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [choice], "usage": self.usage()}

    async def chunks(self, loaded: LoadedModel, include_usage: bool) -> AsyncIterator[str]:
        """Server-sent events, one chunk per token, sent once generation has finished (no earlier first token)."""
        def event(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> str:
            chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                     "choices": choices}
            if include_usage:
                chunk["usage"] = usage
            return f"data: {json.dumps(chunk)}\n\n"

        yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                      "finish_reason": None}])
        decoded = ""
        tokens = self.output.token_ids
        for position in range(len(tokens)):
            text = loaded.tokenizer.decode(tokens[: position + 1], skip_special_tokens=True)
            delta, decoded = text[len(decoded):], text
            logprobs = None if self.output.logprobs is None else {"content": [self.output.logprobs[position]]}
            yield event([{"index": 0, "delta": {"content": delta}, "logprobs": logprobs, "finish_reason": None}])
        rest = None if self.output.logprobs is None else {"content": self.output.logprobs[len(tokens):]}
        yield event([{"index": 0, "delta": {}, "logprobs": rest, "finish_reason": self.output.finish_reason}])
        if include_usage:
            yield event([], self.usage())
        yield "data: [DONE]\n\n"


def serve(config: ServeConfig, loaded: LoadedModel | None = None) -> None:
    """Serve until interrupted; warns when the model is reachable from the network without a key."""
    import uvicorn

    app = create_app(config, loaded)
    if not is_loopback(config.host) and not os.environ.get(config.api_key_env):
        print(f"warning: serving on {config.host} without an API key: anyone who can reach this port can use the "
              f"model (set {config.api_key_env} to require one)", file=sys.stderr)
    print(f"serving '{config.served_name or config.model}' at http://{config.host}:{config.port}/v1", file=sys.stderr)
    uvicorn.run(app, host=config.host, port=config.port, log_level=config.log_level)


@contextlib.contextmanager
def background(app, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run an ASGI ``app`` with uvicorn in a background thread (tests, notebooks, benchmarks); yield its /v1 URL.

    Port 0 picks a free port. The server shuts down when the block ends.
    """
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY only then
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="emkit-serve", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the background server failed to start")
            time.sleep(0.01)
        bound_port = sock.getsockname()[1]
        yield f"http://{host if family == socket.AF_INET else f'[{host}]'}:{bound_port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
