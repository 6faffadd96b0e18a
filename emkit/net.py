"""Talking to OpenAI-compatible endpoints: the plumbing the API judge, API sampling and ``emkit serve`` share.

Which hosts count as this machine (loopback servers need no key), URLs made safe to print and hash
(credentials dropped), API keys read from the environment only, one retry policy (rate limits,
server errors, timeouts and malformed replies, with exponential backoff and jitter, honouring
Retry-After) and one-line descriptions of failed requests with the key masked.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import math
import os
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import openai

from emkit.errors import EmkitError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
"""Where requests go when neither a base_url setting nor $OPENAI_BASE_URL names an endpoint."""
MAX_BACKOFF_S = 60.0
"""The longest exponential-backoff delay between two tries."""
MAX_RETRY_AFTER_S = 300.0
"""The longest Retry-After a server is obeyed for."""
RETRYABLE_STATUS = {408, 409, 429}
"""Besides every 5xx: timeouts, conflicts and rate limits are worth another try."""


class MalformedReply(Exception):
    """A 200 reply whose body is not a usable chat completion (retried like a server error)."""


class RetriesExhausted(Exception):
    """Every try of a request failed in a way worth retrying; ``last`` is the last failure."""

    def __init__(self, last: Exception | None) -> None:
        super().__init__(str(last))
        self.last = last


T = TypeVar("T")
TRANSIENT = (openai.APIConnectionError, openai.APIResponseValidationError, MalformedReply, ValueError)
"""Failures another try may cure besides retryable statuses (ValueError: a body that is not JSON)."""


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses: what only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def without_credentials(url: str) -> str:
    """``url`` without user, password, query or fragment: safe to hash, print and store."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def read_api_key(variable: str, endpoint: str, who: str, setting: str) -> str:
    """The API key from the environment variable ``variable`` (never from a file); a placeholder for a loopback
    endpoint, which usually needs none; else one error naming ``who`` needs it and the ``setting`` to change."""
    key = os.environ.get(variable)
    if key:
        return key
    if is_loopback(urlsplit(endpoint).hostname or ""):
        return "no-key"  # local servers usually need none; the client insists on some value
    raise EmkitError(f"{who} needs an API key in the environment variable {variable}",
                     fix=f"export {variable}=... (or set {setting} to the variable that holds your key)")


def refused_request(endpoint: str, error: openai.APIStatusError, description: str, api_key_env: str,
                    not_found: str, otherwise: str) -> EmkitError:
    """A request the endpoint will never accept (bad key, unknown model, bad parameter), as one line: no retry.

    ``not_found`` is the fix for a 404 (the model id), ``otherwise`` for any other refusal.
    """
    problem = f"{endpoint} refused the request: {description}"
    if error.status_code in (401, 403):
        return EmkitError(problem, fix=f"check the API key in {api_key_env} and its permissions")
    return EmkitError(problem, fix=not_found if error.status_code == 404 else otherwise)


def describe_api_error(error: Exception | None, timeout_s: float, api_key: str) -> str:
    """One phrase for a failed request (HTTP status, time-out, connection, malformed body), the key masked."""
    if isinstance(error, openai.APIStatusError):
        message = error.body.get("message") if isinstance(error.body, dict) else None
        text = f"HTTP {error.status_code}: {message or error.message}"
    elif isinstance(error, openai.APITimeoutError):
        text = f"timed out after {timeout_s:g} s"
    elif isinstance(error, openai.APIConnectionError):
        text = f"connection failed ({error.__cause__ or error})"
    else:
        text = f"malformed reply ({error})"
    return text.replace(api_key, "***") if api_key else text


def first_choice(completion: Any) -> Any:
    """The first choice of a chat completion; MalformedReply when there is none."""
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list) or not choices or getattr(choices[0], "message", None) is None:
        raise MalformedReply("no choices in the reply")
    return choices[0]


async def with_retries(send: Callable[[], Awaitable[T]], tries: int, first_backoff_s: float,
                       refused: Callable[[openai.APIStatusError], EmkitError],
                       on_try: Callable[[int], None] | None = None,
                       on_failure: Callable[[int, Exception], None] | None = None) -> T:
    """``await send()`` until it returns, at most ``tries`` times, sleeping :func:`retry_delay` between tries.

    A status the endpoint will never accept raises ``refused(error)`` at once; after ``tries`` transient
    failures :class:`RetriesExhausted` carries the last. ``on_try(attempt)`` runs before each try and
    ``on_failure(attempt, error)`` after each transient failure (counters, logs).
    """
    last: Exception | None = None
    for attempt in range(tries):
        if attempt:
            await asyncio.sleep(retry_delay(attempt - 1, last, first_backoff_s))
        if on_try is not None:
            on_try(attempt)
        try:
            return await send()
        except openai.APIStatusError as exc:
            if exc.status_code < 500 and exc.status_code not in RETRYABLE_STATUS:
                raise refused(exc) from None
            last = exc
        except TRANSIENT as exc:
            last = exc
        if on_failure is not None:
            on_failure(attempt, last)
    raise RetriesExhausted(last)


def retry_delay(retry: int, error: Exception | None, first_backoff_s: float) -> float:
    """Seconds before retry number ``retry``: Retry-After when the server sent one, else exponential backoff
    from ``first_backoff_s`` with jitter (shared by the API judge and API sampling)."""
    headers = getattr(getattr(error, "response", None), "headers", None)
    if headers is not None:
        wait = retry_after_seconds(headers.get("retry-after-ms"), milliseconds=True)
        if wait is None:
            wait = retry_after_seconds(headers.get("retry-after"))
        if wait is not None:
            return min(wait, MAX_RETRY_AFTER_S)
    return min(MAX_BACKOFF_S, first_backoff_s * 2**retry) * random.uniform(0.5, 1.0)


def retry_after_seconds(value: str | None, milliseconds: bool = False) -> float | None:
    """Seconds to wait from a Retry-After header: delay seconds or an HTTP date (or retry-after-ms)."""
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        return max(0.0, number / 1000 if milliseconds else number) if math.isfinite(number) else None
    if milliseconds:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())
