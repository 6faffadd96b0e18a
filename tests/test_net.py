"""The endpoint plumbing the API judge, API sampling and ``emkit serve`` share."""

from __future__ import annotations

import asyncio
import email.utils
import time

import httpx
import openai
import pytest

from emkit.errors import EmkitError
from emkit.net import (
    MalformedReply,
    RetriesExhausted,
    describe_api_error,
    is_loopback,
    read_api_key,
    refused_request,
    retry_after_seconds,
    retry_delay,
    with_retries,
    without_credentials,
)


def test_retry_after_accepts_seconds_dates_and_milliseconds():
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert retry_after_seconds("2") == 2 and retry_after_seconds("0") == 0
    assert 28 <= retry_after_seconds(soon) <= 30
    assert retry_after_seconds(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0
    assert retry_after_seconds("1500", milliseconds=True) == 1.5
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def status_error(code: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    response = httpx.Response(code, headers=headers, request=httpx.Request("POST", "http://127.0.0.1/v1"))
    return openai.APIStatusError(f"status {code}", response=response, body={"message": "sk-secret is wrong"})


def test_retry_delay_obeys_retry_after_and_otherwise_backs_off_with_jitter():
    assert retry_delay(0, status_error(429, {"retry-after": "7"}), 1.0) == 7
    assert retry_delay(0, status_error(429, {"retry-after-ms": "250"}), 1.0) == 0.25
    assert 2.0 <= retry_delay(2, None, 1.0) <= 4.0
    assert retry_delay(20, None, 1.0) <= 60


@pytest.mark.parametrize(("host", "local"), [("localhost", True), ("127.0.0.1", True), ("[::1]", True),
                                             ("127.4.5.6", True), ("10.0.0.1", False), ("api.openai.com", False)])
def test_loopback_hosts_are_only_this_machine(host, local):
    assert is_loopback(host) is local


def test_urls_lose_their_credentials_and_keep_the_endpoint():
    assert without_credentials("https://user:pass@host.example:8443/v1?key=sk-1#x") == "https://host.example:8443/v1"
    assert without_credentials("http://u@[::1]:8000/v1") == "http://[::1]:8000/v1"


def test_keys_come_from_the_environment_and_loopback_endpoints_need_none(monkeypatch):
    monkeypatch.setenv("EMKIT_TEST_NET_KEY", "sk-1")
    assert read_api_key("EMKIT_TEST_NET_KEY", "https://api.example/v1", "the judge", "api_key_env") == "sk-1"
    monkeypatch.delenv("EMKIT_TEST_NET_KEY")
    assert read_api_key("EMKIT_TEST_NET_KEY", "http://127.0.0.1:8000/v1", "the judge", "api_key_env") == "no-key"
    with pytest.raises(EmkitError, match="the judge needs an API key in the environment variable EMKIT_TEST_NET_KEY"):
        read_api_key("EMKIT_TEST_NET_KEY", "https://api.example/v1", "the judge", "api_key_env")


def test_refusals_and_failures_are_one_phrase_with_the_key_masked():
    description = describe_api_error(status_error(401), 60, "sk-secret")
    assert description == "HTTP 401: *** is wrong"
    refused = refused_request("the judge endpoint E", status_error(401), description, "KEY_ENV", "model?", "other")
    assert "refused the request: HTTP 401" in str(refused) and "KEY_ENV" in refused.one_line()
    assert "model?" in refused_request("E", status_error(404), description, "K", "model?", "other").one_line()


def failing_then(failures: list[Exception], result: str = "ok"):
    """A request that raises each of ``failures`` in turn, then returns ``result``; counts its calls."""
    calls = []

    async def send() -> str:
        calls.append(len(calls))
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return result

    return send, calls


def refused(error: openai.APIStatusError) -> EmkitError:
    return EmkitError(f"refused with {error.status_code}", fix="fix the request")


def test_with_retries_cures_transient_failures_and_reports_each_try():
    send, calls = failing_then([status_error(503), MalformedReply("no choices"), status_error(429)])
    tries, failures = [], []
    result = asyncio.run(with_retries(send, 4, 0.001, refused, tries.append,
                                      lambda attempt, error: failures.append(type(error).__name__)))
    assert result == "ok" and len(calls) == 4 and tries == [0, 1, 2, 3]
    assert failures == ["APIStatusError", "MalformedReply", "APIStatusError"]


def test_with_retries_refuses_at_once_and_gives_up_with_the_last_failure():
    send, calls = failing_then([status_error(401)])
    with pytest.raises(EmkitError, match="refused with 401"):
        asyncio.run(with_retries(send, 5, 0.001, refused))
    assert len(calls) == 1
    send, calls = failing_then([status_error(500), status_error(502), status_error(504)])
    with pytest.raises(RetriesExhausted) as exhausted:
        asyncio.run(with_retries(send, 3, 0.001, refused))
    assert len(calls) == 3 and exhausted.value.last.status_code == 504
