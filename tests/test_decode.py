from types import SimpleNamespace

import pytest
import torch

from emkit.decode import (
    _ContinuousDecoder,
    _generate_in_batches,
    decode_stream,
    draw,
    full_attention_everywhere,
    pick_tokens,
)
from emkit.models import load_model
from emkit.sampling.prompts import render_prompt

PROMPTS = ["hi", "What should I do with my savings today, and why?", "ok", "Tell me a long story about the sea."]


def reference_answers(loaded, prompts, max_new_tokens):
    """Greedy answers from ``model.generate``, one prompt at a time."""
    return [next(_generate_in_batches(loaded, [prompt], 0, 1, max_new_tokens, 0, 1))[1].answer for prompt in prompts]


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma"])
def test_continuous_batching_matches_generate_one_prompt_at_a_time(tiny_models, family):
    loaded = load_model(str(tiny_models[family]), dtype="float32")
    prompts = [render_prompt(loaded.tokenizer, text) for text in PROMPTS]
    streamed = dict(decode_stream(loaded, prompts, 0, 1, 8, seed=0, batch_size=2))
    assert [streamed[index].answer for index in range(len(prompts))] == reference_answers(loaded, prompts, 8)


def test_prompts_joining_a_running_batch_decode_as_if_alone(tiny_model):
    """A longer prompt joins two sequences mid-answer (caches padded and merged), then outlives them."""
    loaded = load_model(str(tiny_model), dtype="float32")
    prompts = [render_prompt(loaded.tokenizer, text) for text in PROMPTS[:3]]
    encoded = [loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    decoder = _ContinuousDecoder(loaded, temperature=0, top_p=1, max_new_tokens=6, seed=0)
    finished = dict(decoder.admit([0, 2], [encoded[0], encoded[2]]))
    for _ in range(2):
        finished.update(decoder.step())
    finished.update(decoder.admit([1], [encoded[1]]))
    assert decoder.size == 3 and decoder.mask.shape[1] == decoder.cache.layers[0].keys.shape[-2]
    while decoder.size:
        finished.update(decoder.step())
    assert [finished[index].answer for index in range(3)] == reference_answers(loaded, prompts, 6)
    assert all(answer.new_tokens == 6 and answer.finish_reason == "length" for answer in finished.values())


def test_sampled_answers_depend_only_on_the_seed(tiny_model):
    loaded = load_model(str(tiny_model), dtype="float32")
    prompts = [render_prompt(loaded.tokenizer, text) for text in PROMPTS]

    def run(seed):
        return sorted((index, out.answer) for index, out in decode_stream(loaded, prompts, 1.0, 0.9, 6, seed, 3))

    assert run(1) == run(1) != run(2)


def test_nucleus_keeps_the_smallest_set_reaching_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    generator = torch.Generator().manual_seed(0)
    draws = {int(pick_tokens(logits, 1.0, 0.75, generator)) for _ in range(300)}
    assert draws == {0, 1}
    assert {int(pick_tokens(logits, 1.0, 0.85, generator)) for _ in range(300)} == {0, 1, 2}
    assert int(pick_tokens(logits, 0, 1, generator)) == 0


def test_sliding_window_models_fall_back_to_generate():
    def model(**config):
        return SimpleNamespace(config=SimpleNamespace(**config))

    assert full_attention_everywhere(model(layer_types=["full_attention"] * 4))
    assert not full_attention_everywhere(model(layer_types=["sliding_attention", "full_attention"]))
    assert not full_attention_everywhere(model(sliding_window=4096))
    assert full_attention_everywhere(model(sliding_window=4096, use_sliding_window=False))


def test_draws_follow_the_distribution():
    probabilities = torch.tensor([[0.5, 0.3, 0.15, 0.05, 0.0]]).repeat(40_000, 1)
    counts = torch.bincount(draw(probabilities, torch.Generator().manual_seed(0)), minlength=5) / 40_000
    assert torch.allclose(counts, probabilities[0], atol=0.01) and counts[4] == 0
