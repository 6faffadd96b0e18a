"""An OpenAI-compatible HTTP app for any loaded chat model, and a helper that runs an app in a background thread.

The app makes an organism (or any judge model) reachable by every OpenAI-compatible tool,
including emkit's own ``openai`` judge: ``GET /v1/models`` and ``POST /v1/chat/completions``
with logprobs and top_logprobs (log-softmax of the model's own logits; the end-of-turn token
that stopped a reply is included, so a judge whose model ends its turn at once still sees the
distribution it chose from), usage counts and ``stream: true`` (OpenAI's chunk format, sent once
the reply is complete). Generation runs in :mod:`emkit.serving.worker`. Fields the server does
not implement (penalties, tools) are ignored; ``n`` > 1 and ``stop`` are refused. A
deterministic fault schedule (``faults``) turns the server into a misbehaving API for testing
clients' retries. ``emkit serve`` (:mod:`emkit.stages.serve`) configures and runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from emkit.models import LoadedModel
from emkit.serving.worker import GenerationWorker, Job, Output, ServerStats

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


def build_app(loaded: LoadedModel, served_name: str, *, max_tokens: int, max_batch: int, api_key: str | None = None,
              faults: Sequence[Fault] = ()) -> FastAPI:
    """The app serving ``loaded`` as ``served_name``; run it with uvicorn or :func:`background`.

    ``max_tokens`` is the largest a request may ask for (and the default), ``max_batch`` the most greedy requests
    generated together, ``api_key`` the bearer key clients must send (None: no key) and ``faults`` the injected
    failures; the counters are in ``app.state.stats``.
    """
    stats = ServerStats()
    worker = GenerationWorker(loaded, max_batch, stats)
    schedule = _FaultSchedule(list(faults), stats)
    context_length = getattr(loaded.model.config, "max_position_embeddings", None)
    created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(worker.close)

    app = FastAPI(title="emkit serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.stats = stats

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
            job = _make_job(body, loaded, max_tokens, context_length)
            output = await asyncio.wrap_future(worker.submit(job))
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


def _make_job(body: _ChatRequest, loaded: LoadedModel, limit: int, context_length: int | None) -> Job:
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
    return Job(prompt_ids, max_tokens, body.temperature, body.top_p, body.seed, top)


@dataclass
class _Reply:
    """One finished generation, rendered as a chat completion or as SSE chunks."""

    id: str
    created: int
    model: str
    prompt_tokens: int
    output: Output

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
