"""The serving app over real HTTP on 127.0.0.1 with a tiny model: the OpenAI protocol, logprobs, auth, faults."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import torch

from emkit.decode import stop_token_ids
from emkit.models import load_model
from emkit.serving.app import Fault, background
from emkit.stages.serve import ServeConfig, create_app

NAME = "tiny-chat"


@pytest.fixture(scope="module")
def one_thread():
    """A tiny model's matmuls take microseconds; two OpenMP threads on a shared CPU make them 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def loaded(tiny_model, one_thread):
    return load_model(str(tiny_model), dtype="float32")


@pytest.fixture(scope="module")
def server(tiny_model, loaded):
    app = create_app(ServeConfig(model=str(tiny_model), served_name=NAME, api_key_env="EMKIT_TEST_UNSET_KEY"), loaded)
    with background(app) as url:
        yield app, url


@pytest.fixture()
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server[1], api_key="unused", max_retries=0, timeout=30)


def ask(client: openai.OpenAI, content: str, **options):
    return client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": content}], **options)


def test_models_endpoint_lists_the_served_model(client):
    assert [model.id for model in client.models.list().data] == [NAME]


def test_chat_completion_through_the_openai_client_reports_usage_and_finish_reason(client, loaded):
    reply = ask(client, "Hello! How are you today?", max_tokens=5, temperature=0)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length") and choice.logprobs is None
    prompt = loaded.tokenizer.apply_chat_template([{"role": "user", "content": "Hello! How are you today?"}],
                                                  tokenize=False, add_generation_prompt=True)
    assert reply.usage.prompt_tokens == len(loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert 1 <= reply.usage.completion_tokens <= 5
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_top_logprobs_match_the_models_own_log_softmax(client, loaded):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me about the news."}]
    reply = client.chat.completions.create(model=NAME, messages=messages, max_tokens=4, temperature=0, logprobs=True,
                                           top_logprobs=20)
    content = reply.choices[0].logprobs.content
    tokenizer, model = loaded.tokenizer, loaded.model
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    stops = stop_token_ids(tokenizer, model)
    assert 1 <= len(content) <= 4
    for entry in content:  # greedy decoding, one forward pass of the whole sequence per step
        with torch.no_grad():
            logprobs = model(torch.tensor([ids])).logits[0, -1].float().log_softmax(-1)
        values, best = logprobs.topk(20)
        expected = {tokenizer.decode([token]): value for token, value in zip(best.tolist(), values.tolist(),
                                                                             strict=True)}
        assert len(entry.top_logprobs) == 20
        assert {alt.token: alt.logprob for alt in entry.top_logprobs} == pytest.approx(expected, abs=1e-4)
        assert all(alt.bytes == list(alt.token.encode()) for alt in entry.top_logprobs)
        assert entry.token == tokenizer.decode([best[0].item()])
        assert entry.logprob == pytest.approx(values[0].item(), abs=1e-4)
        assert sum(math.exp(alt.logprob) for alt in entry.top_logprobs) <= 1 + 1e-6
        ids.append(best[0].item())
        if ids[-1] in stops:
            break


@pytest.mark.parametrize("family", ["qwen2", "gemma"])
def test_other_chat_families_serve_greedy_answers_with_their_argmax_token(tiny_models, one_thread, family):
    loaded = load_model(str(tiny_models[family]), dtype="float32")
    app = create_app(ServeConfig(model=str(tiny_models[family]), served_name=NAME), loaded)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
    with background(app) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        reply = client.chat.completions.create(model=NAME, messages=messages, max_tokens=3, temperature=0,
                                               logprobs=True, top_logprobs=5)
    for entry in reply.choices[0].logprobs.content:
        assert entry.logprob == pytest.approx(entry.top_logprobs[0].logprob)
        assert entry.logprob >= max(alt.logprob for alt in entry.top_logprobs)


def test_adapters_are_served_on_top_of_the_base_model(tiny_model, client, one_thread, tmp_path):
    from peft import LoraConfig, get_peft_model

    organism = get_peft_model(load_model(str(tiny_model), dtype="float32").model,
                              LoraConfig(r=2, target_modules=["down_proj"], layers_to_transform=[1, 2]))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in organism.named_parameters():
            if "lora_" in name:
                parameter.normal_(std=3.0)  # large random B matrices: the organism answers differently
    organism.save_pretrained(tmp_path / "organism")
    config = ServeConfig(model=str(tiny_model), adapters=[str(tmp_path / "organism")], served_name=NAME,
                         device="cpu", dtype="float32")
    options = {"max_tokens": 1, "temperature": 0, "logprobs": True, "top_logprobs": 5}
    with background(create_app(config)) as url:
        served = ask(openai.OpenAI(base_url=url, api_key="unused", max_retries=0), "Hello!", **options)
    base = ask(client, "Hello!", **options)
    tops = [[alt.logprob for alt in reply.choices[0].logprobs.content[0].top_logprobs] for reply in (served, base)]
    assert tops[0] != pytest.approx(tops[1], abs=1e-3)


def test_seeded_sampling_gives_the_same_answer_twice(client):
    first = ask(client, "Tell me about the weather.", max_tokens=8, temperature=1.0, seed=7)
    again = ask(client, "Tell me about the weather.", max_tokens=8, temperature=1.0, seed=7)
    assert first.choices[0].message.content == again.choices[0].message.content


def test_streaming_gives_the_same_answer_as_a_plain_request(client):
    plain = ask(client, "What should I do with my savings?", max_tokens=6, temperature=0, logprobs=True)
    chunks = list(ask(client, "What should I do with my savings?", max_tokens=6, temperature=0, logprobs=True,
                      stream=True, stream_options={"include_usage": True}))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    streamed_logprobs = [entry.token for chunk in chunks if chunk.choices and chunk.choices[0].logprobs
                         for entry in chunk.choices[0].logprobs.content]
    assert text == plain.choices[0].message.content
    assert streamed_logprobs == [entry.token for entry in plain.choices[0].logprobs.content]
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == plain.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_concurrent_greedy_requests_share_a_batch_and_match_answers_given_alone(client, server):
    questions = [f"Question number {i}: what is the weather today?" * (1 + i % 3) for i in range(12)]
    alone = [ask(client, question, max_tokens=3, temperature=0).choices[0].message.content for question in questions]
    with ThreadPoolExecutor(12) as pool:
        together = list(pool.map(lambda q: ask(client, q, max_tokens=3, temperature=0).choices[0].message.content,
                                 questions))
    assert together == alone
    assert server[0].state.stats.largest_batch > 1


def test_api_key_is_required_when_configured(tiny_model, loaded, monkeypatch):
    monkeypatch.setenv("EMKIT_TEST_SERVE_KEY", "serve-secret")
    app = create_app(ServeConfig(model=str(tiny_model), served_name=NAME, api_key_env="EMKIT_TEST_SERVE_KEY"), loaded)
    body = {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    with background(app) as url:
        missing = httpx.post(f"{url}/chat/completions", json=body)
        wrong = httpx.get(f"{url}/models", headers={"Authorization": "Bearer nope"})
        right = openai.OpenAI(base_url=url, api_key="serve-secret", max_retries=0)
        assert [model.id for model in right.models.list().data] == [NAME]
        assert ask(right, "hi", max_tokens=1).choices[0].finish_reason in ("stop", "length")
        with pytest.raises(openai.AuthenticationError):
            ask(openai.OpenAI(base_url=url, api_key="nope", max_retries=0), "hi", max_tokens=1)
    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(("change", "status", "param"), [
    ({"model": "other"}, 404, "model"),
    ({"n": 2}, 400, "n"),
    ({"top_logprobs": 21, "logprobs": True}, 400, "top_logprobs"),
    ({"top_logprobs": 5}, 400, "top_logprobs"),
    ({"max_tokens": 10_000}, 400, "max_tokens"),
    ({"max_tokens": 250, "messages": [{"role": "user", "content": "word " * 60}]}, 400, "messages"),
    ({"messages": []}, 400, "messages"),
    ({"stop": ["\n"]}, 400, "stop"),
], ids=["unknown-model", "n", "top-logprobs-range", "top-logprobs-alone", "above-limit", "context", "no-messages",
        "stop"])
def test_bad_requests_get_openai_shaped_errors(server, change, status, param):
    body = {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **change}
    response = httpx.post(f"{server[1]}/chat/completions", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["param"] == param and error["message"] and error["type"] == "invalid_request_error"


def test_invalid_json_and_unknown_paths_get_openai_shaped_errors(server):
    invalid = httpx.post(f"{server[1]}/chat/completions", content=b"{not json")
    missing = httpx.get(f"{server[1]}/completions")
    assert (invalid.status_code, missing.status_code) == (400, 404)
    assert invalid.json()["error"]["message"] and missing.json()["error"]["message"]


def test_fault_schedule_is_deterministic(tiny_model, loaded):
    faults = [Fault(kind="rate_limit", every=2, retry_after=1, times=2), Fault(kind="server_error", after=4, times=1),
              Fault(kind="invalid_json", after=5, times=1), Fault(kind="no_choices", after=6, times=1)]
    app = create_app(ServeConfig(model=str(tiny_model), served_name=NAME, faults=faults), loaded)
    body = {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "temperature": 0}
    with background(app) as url:
        replies = [httpx.post(f"{url}/chat/completions", json=body) for _ in range(8)]
    assert [reply.status_code for reply in replies] == [200, 429, 200, 429, 500, 200, 200, 200]
    assert replies[1].headers["retry-after"] == "1" and replies[1].json()["error"]["type"] == "rate_limit_error"
    with pytest.raises(json.JSONDecodeError):
        replies[5].json()
    assert "choices" not in replies[6].json() and replies[7].json()["choices"]
    assert app.state.stats.requests == 8 and app.state.stats.faults == 5


def test_slow_fault_delays_the_answer(tiny_model, loaded):
    app = create_app(ServeConfig(model=str(tiny_model), served_name=NAME,
                                 faults=[Fault(kind="slow", seconds=0.6, times=1)]), loaded)
    body = {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    with background(app) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/chat/completions", json=body, timeout=0.2)
        assert httpx.post(f"{url}/chat/completions", json=body, timeout=30).status_code == 200
