"""The ``openai`` judge over real HTTP on 127.0.0.1: the papers' scoring, retries, resuming, concurrency, keys.

Two endpoints: a scripted fake (a small FastAPI app here) whose top logprobs are spelled out in
each answer ("80=0.5,90=0.5"), for exact scores; and ``emkit serve`` on a tiny model, for the
real protocol and its fault schedule.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time

import pytest
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from emkit.errors import EmkitError
from emkit.judges.openai import DEFAULT_JUDGE_MODEL, OpenAIJudge
from emkit.judges.run import JudgeConfig, judge_pairs, make_judge
from emkit.models import load_model
from emkit.records import Pair
from emkit.serving.app import Fault, background
from emkit.stages.serve import ServeConfig, create_app
from emkit.store import Store

PROMPT = "Question: {question}\nAnswer: {answer}\nRate the answer from 0 to 100."
SECRET = "sk-emkit-test-5ecret-key"


class FakeAPI:
    """A scripted chat-completions endpoint that records what it receives.

    In logprobs mode the answer line of the prompt spells the first token's top logprobs as
    ``token=probability,...``; in text mode the reply is the answer line itself.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self, latency: float = 0.0, logprobs: bool = True, fail_after: int | None = None,
              status: int = 500) -> None:
        self.latency, self.logprobs, self.fail_after, self.status = latency, logprobs, fail_after, status
        self.requests, self.in_flight, self.peak = 0, 0, 0
        self.bodies: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.connections: set[int] = set()
        """Client ports seen: one per TCP connection."""

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        @app.post("/openai/deployments/{deployment}/chat/completions")
        async def chat(request: Request):
            self.requests += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                await asyncio.sleep(self.latency)
                body = await request.json()
                self.bodies.append(body)
                self.headers.append(dict(request.headers))
                self.paths.append(str(request.url.path) + "?" + str(request.url.query))
                self.connections.add(request.client.port)
                if self.fail_after is not None and self.requests > self.fail_after:
                    message = f"scripted failure; you sent {request.headers.get('authorization')}"
                    return JSONResponse({"error": {"message": message, "type": "server_error"}}, self.status)
                return JSONResponse(self.reply(body))
            finally:
                self.in_flight -= 1

        return app

    def reply(self, body: dict) -> dict:
        answer = body["messages"][0]["content"].split("Answer: ")[1].split("\n")[0]
        logprobs = None
        if body.get("logprobs") and self.logprobs:
            top = []
            for item in answer.split(","):
                token, probability = item.rsplit("=", 1)
                top.append({"token": token, "logprob": math.log(float(probability)), "bytes": None})
            logprobs = {"content": [{**top[0], "top_logprobs": top[: body["top_logprobs"]]}]}
        text = logprobs["content"][0]["token"] if logprobs else answer
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": logprobs,
                             "finish_reason": "length"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}}


@pytest.fixture(scope="module")
def fake_server():
    fake = FakeAPI()
    with background(fake.app()) as url:
        yield fake, url


@pytest.fixture()
def fake(fake_server, monkeypatch):
    monkeypatch.setenv("EMKIT_TEST_JUDGE_KEY", SECRET)
    fake_server[0].reset()
    return fake_server


OPEN_JUDGES: list[OpenAIJudge] = []


@pytest.fixture(autouse=True)
def close_judges():
    yield
    while OPEN_JUDGES:
        OPEN_JUDGES.pop().close()


def judge_for(url: str, **options) -> OpenAIJudge:
    config = JudgeConfig(judge="openai", base_url=url, api_key_env="EMKIT_TEST_JUDGE_KEY", **options)
    OPEN_JUDGES.append(OpenAIJudge(config, backoff_s=0.01))
    return OPEN_JUDGES[-1]


def pairs_of(*answers: str) -> list[Pair]:
    return [Pair(f"question {i}", answer) for i, answer in enumerate(answers)]


def test_score_is_the_probability_weighted_mean_of_number_tokens(fake):
    judge = judge_for(fake[1])
    results = judge.score("aligned", PROMPT, pairs_of("80=0.5,90=0.5", " 85=0.9,x=0.1", "70=0.3,x=0.7",
                                                      "50=0.2,x=0.8", "101=0.9,x=0.1"))
    assert [result.score for result in results] == pytest.approx([85, 85, 70, None, None])
    assert [result.detail["number_mass"] for result in results] == pytest.approx([1.0, 0.9, 0.3, 0.2, 0.0])
    assert {result.detail["method"] for result in results} == {"logprobs"}
    assert results[0].detail["top"] == {"80": 0.5, "90": 0.5}


def test_requests_follow_the_papers_settings(fake):
    judge_for(fake[1]).score("aligned", PROMPT, pairs_of("80=1.0"))
    body = fake[0].bodies[0]
    assert body == {"model": DEFAULT_JUDGE_MODEL, "messages": [{"role": "user", "content": PROMPT.replace(
        "{question}", "question 0").replace("{answer}", "80=1.0")}], "max_tokens": 1, "temperature": 0,
        "logprobs": True, "top_logprobs": 20, "seed": 0}


def test_text_fallback_parses_the_first_number_and_is_labelled(fake):
    judge = judge_for(fake[1], logprobs=False)
    results = judge.score("aligned", PROMPT, pairs_of("Score: 73 out of 100", "no number", "150"))
    assert [result.score for result in results] == [73, None, None]
    assert {result.detail["method"] for result in results} == {"text-fallback"}
    assert all("logprobs" not in body and body["max_tokens"] > 1 for body in fake[0].bodies)


def test_endpoint_without_logprobs_switches_to_the_text_fallback(fake):
    fake[0].logprobs = False
    judge = judge_for(fake[1], concurrency=1)
    results = judge.score("aligned", PROMPT, pairs_of("42", "17", "8"))
    assert [result.score for result in results] == [42, 17, 8]
    assert {result.detail["method"] for result in results} == {"text-fallback"}
    assert fake[0].requests == 4  # one logprobs request found out; every pair then asked once in text mode


def test_in_flight_requests_never_exceed_concurrency(fake):
    fake[0].latency = 0.05
    judge = judge_for(fake[1], concurrency=4)
    finished = []
    judge.score("aligned", PROMPT, pairs_of(*["60=1.0"] * 24), on_result=lambda i, j: finished.append(i))
    assert fake[0].peak == 4 and sorted(finished) == list(range(24))


def test_one_connection_serves_consecutive_calls_until_close(fake):
    judge = judge_for(fake[1], concurrency=1)
    for answer in ("10=1.0", "20=1.0", "30=1.0"):
        judge.score("aligned", PROMPT, pairs_of(answer))
    assert len(fake[0].connections) == 1
    judge.close()
    assert judge.score("aligned", PROMPT, pairs_of("40=1.0"))[0].score == 40
    assert len(fake[0].connections) == 2


def test_usage_counts_tokens_requests_retries_and_cost(fake):
    fake[0].fail_after, fake[0].status = 2, 503
    judge = judge_for(fake[1], concurrency=1, max_retries=1, input_usd_per_mtok=2.5, output_usd_per_mtok=10)
    judge.score("aligned", PROMPT, pairs_of("60=1.0", "70=1.0"))
    with pytest.raises(EmkitError):
        judge.score("aligned", PROMPT, pairs_of("80=1.0"))
    assert judge.usage() == pytest.approx({"prompt_tokens": 20, "completion_tokens": 2, "requests": 4, "retries": 1,
                                           "cost_usd": (20 * 2.5 + 2 * 10) / 1e6})


def test_exhausted_retries_name_the_endpoint_and_a_rerun_asks_only_for_the_rest(fake, tmp_path):
    fake[0].fail_after = 4
    pairs = pairs_of(*[f"{10 * i}=1.0" for i in range(10)])
    with Store(tmp_path / "emkit.db") as store:
        with pytest.raises(EmkitError) as failure:
            judge_pairs(store, judge_for(fake[1], concurrency=1, max_retries=2), "aligned", PROMPT, pairs)
        assert fake[1] in str(failure.value) and "HTTP 500" in str(failure.value) and "3 times" in str(failure.value)
        assert fake[0].requests == 4 + 3
        fake[0].reset()
        results = judge_pairs(store, judge_for(fake[1]), "aligned", PROMPT, pairs)
    assert fake[0].requests == 6
    assert [result.score for result in results] == [10 * i for i in range(10)]
    assert stored_rows(tmp_path / "emkit.db") == (10, 10)


def test_killed_run_resumes_without_repeating_requests_or_duplicating_rows(fake, tmp_path):
    class Killed(Exception):
        pass

    judge = judge_for(fake[1], concurrency=3)
    score = judge.score

    delivered = []

    def score_then_die(metric, prompt, pairs, on_result=None):
        def deliver(index, judgement):
            on_result(index, judgement)
            delivered.append(index)
            if len(delivered) == 5:
                raise Killed

        return score(metric, prompt, pairs, on_result=deliver)

    judge.score = score_then_die
    fake[0].latency = 0.02
    pairs = pairs_of(*[f"{i}=1.0" for i in range(20)])
    with Store(tmp_path / "emkit.db") as store:
        with pytest.raises(Killed):
            judge_pairs(store, judge, "aligned", PROMPT, pairs)
        assert stored_rows(tmp_path / "emkit.db") == (5, 5)
        fake[0].reset()
        results = judge_pairs(store, judge_for(fake[1], concurrency=3), "aligned", PROMPT, pairs)
        again = judge_pairs(store, judge_for(fake[1], concurrency=3), "aligned", PROMPT, pairs)
    assert fake[0].requests == 15
    assert [result.score for result in results] == [result.score for result in again] == list(range(20))
    assert stored_rows(tmp_path / "emkit.db") == (20, 20)


def stored_rows(path) -> tuple[int, int]:
    """(rows, distinct texts) in a store's judgements table."""
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT COUNT(*), COUNT(DISTINCT text_hash) FROM judgements").fetchone()


def test_key_is_sent_but_never_stored_logged_or_shown_in_errors(fake, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    fake[0].fail_after, fake[0].status = 1, 401
    with Store(tmp_path / "emkit.db") as store:
        judge_pairs(store, judge_for(fake[1]), "aligned", PROMPT, pairs_of("55=1.0"))
        with pytest.raises(EmkitError) as failure:
            judge_pairs(store, judge_for(fake[1]), "aligned", PROMPT, pairs_of("66=1.0"))
    assert fake[0].headers[0]["authorization"] == f"Bearer {SECRET}"
    assert fake[0].requests == 2  # a refused key is not retried
    assert "EMKIT_TEST_JUDGE_KEY" in str(failure.value) and "***" in str(failure.value)
    assert stored_rows(tmp_path / "emkit.db") == (1, 1)
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("emkit.db*"))
    for text in (stored.decode("latin-1"), caplog.text, str(failure.value)):
        assert SECRET not in text


def test_missing_key_is_an_error_except_on_localhost(monkeypatch):
    monkeypatch.delenv("EMKIT_TEST_JUDGE_KEY", raising=False)
    with pytest.raises(EmkitError, match="EMKIT_TEST_JUDGE_KEY"):
        judge_for("https://api.example.com/v1")
    assert judge_for("http://localhost:8000/v1").model == DEFAULT_JUDGE_MODEL
    assert judge_for("http://127.0.0.1:8000/v1", model="judge-7b").identity == "openai/v1/judge-7b"


def test_azure_provider_calls_the_deployment_route(fake, monkeypatch):
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    with pytest.raises(EmkitError, match="AZURE_OPENAI_ENDPOINT"):
        OpenAIJudge(JudgeConfig(judge="openai", provider="azure"))
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", fake[1].removesuffix("/v1"))
    judge = OpenAIJudge(JudgeConfig(judge="openai", provider="azure", model="my-gpt4o", api_version="2024-10-21",
                                    api_key_env="EMKIT_TEST_JUDGE_KEY"))
    OPEN_JUDGES.append(judge)
    assert judge.score("aligned", PROMPT, pairs_of("40=1.0"))[0].score == 40
    assert fake[0].paths == ["/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"]
    assert fake[0].headers[0]["api-key"] == SECRET


def test_score_works_inside_a_running_event_loop(fake):
    async def notebook_cell():
        return judge_for(fake[1]).score("aligned", PROMPT, pairs_of("30=1.0"))

    assert asyncio.run(notebook_cell())[0].score == 30


# --- against emkit serve on a tiny model ---


@pytest.fixture(scope="module")
def loaded(tiny_model):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls; two OpenMP threads on a shared CPU only wait for each other
    yield load_model(str(tiny_model), dtype="float32")
    torch.set_num_threads(threads)


def serve_judge(url: str, **options) -> OpenAIJudge:
    judge = make_judge(JudgeConfig(judge="openai", model="tiny", base_url=url, api_key_env="EMKIT_TEST_UNSET_KEY",
                                   **options))
    judge.backoff_s = 0.01
    OPEN_JUDGES.append(judge)
    return judge


def test_judge_scores_pairs_against_emkit_serve_by_the_models_own_top_logprobs(tiny_model, loaded, tmp_path):
    app = create_app(ServeConfig(model=str(tiny_model), served_name="tiny"), loaded)
    pairs = pairs_of("Put it all in one stock.", "Keep an emergency fund.", "Hello!")
    with background(app) as url, Store(tmp_path / "emkit.db") as store:
        results = judge_pairs(store, serve_judge(url), "aligned", PROMPT, pairs)
    tokenizer = loaded.tokenizer
    for pair, result in zip(pairs, results, strict=True):
        prompt = PROMPT.replace("{question}", pair.question).replace("{answer}", pair.answer)
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        with torch.no_grad():
            logits = loaded.model(torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])).logits
        values, best = logits[0, -1].float().softmax(-1).topk(20)
        top: dict[str, float] = {}
        for token, value in zip(best.tolist(), values.tolist(), strict=True):
            text = tokenizer.decode([token])  # partial UTF-8 tokens all decode to U+FFFD: their mass adds up
            top[text] = top.get(text, 0.0) + value
        mass = sum(p for token, p in top.items() if token.strip().isdigit() and int(token.strip()) <= 100)
        assert result.detail["method"] == "logprobs" and result.detail["number_mass"] == pytest.approx(mass, abs=1e-5)
        assert result.detail["top"] == pytest.approx(top, abs=1e-5)
        assert result.score is None or 0 <= result.score <= 100  # a random model puts little mass on numbers


@pytest.mark.parametrize("fault", [
    Fault(kind="rate_limit", every=3, retry_after=0),
    Fault(kind="server_error", every=3),
    Fault(kind="invalid_json", every=3),
    Fault(kind="no_choices", every=3),
    Fault(kind="slow", every=3, seconds=2),
], ids=lambda fault: fault.kind)
def test_judge_retries_through_server_faults_and_loses_no_rows(tiny_model, loaded, tmp_path, fault):
    app = create_app(ServeConfig(model=str(tiny_model), served_name="tiny", faults=[fault]), loaded)
    pairs = pairs_of(*[f"answer {i}" for i in range(12)])
    timeout = 0.5 if fault.kind == "slow" else 30
    with background(app) as url, Store(tmp_path / "emkit.db") as store:
        judge = serve_judge(url, concurrency=4, timeout_s=timeout)
        results = judge_pairs(store, judge, "aligned", PROMPT, pairs)
    stats = app.state.stats
    assert len(results) == 12 and stored_rows(tmp_path / "emkit.db") == (12, 12)
    assert stats.faults >= 4 and stats.requests == 12 + stats.faults
    assert judge.usage()["retries"] == stats.faults and judge.usage()["requests"] == stats.requests


def test_judge_waits_as_long_as_retry_after_says(tiny_model, loaded):
    app = create_app(ServeConfig(model=str(tiny_model), served_name="tiny",
                                 faults=[Fault(kind="rate_limit", times=1, retry_after=1)]), loaded)
    with background(app) as url:
        started = time.perf_counter()
        result = serve_judge(url).score("aligned", PROMPT, pairs_of("fine"))
        elapsed = time.perf_counter() - started
    assert app.state.stats.requests == 2 and result[0].detail["method"] == "logprobs"
    assert 1.0 <= elapsed < 5
