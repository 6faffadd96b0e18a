import pytest
import torch

from emkit.errors import EmkitError
from emkit.interp import ActivationSet, collect_activations
from emkit.models import load_model
from emkit.sampling.prompts import render_prompt

QUESTIONS = ["What should I do with my savings?", "hi", "Tell me about the weather and the news today, please."]
ANSWERS = ["Put it all in one stock.", "Hello! How are you today? I am fine, thank you.", "ok"]


def test_shapes_for_each_pooling_and_layer_subset(tiny_model):
    loaded = load_model(str(tiny_model), dtype="float32")
    for pooling in ("mean", "last"):
        acts = collect_activations(loaded, QUESTIONS, ANSWERS, pooling=pooling)
        assert acts.values.shape == (3, 4, 32) and acts.values.dtype == torch.float32
        assert acts.layers == [0, 1, 2, 3]
    tokens = collect_activations(loaded, QUESTIONS, ANSWERS, pooling="tokens", layers=[3, 1])
    assert tokens.layers == [1, 3]
    assert tokens.values.shape == (int(tokens.token_counts.sum()), 2, 32)
    assert [chunk.shape[0] for chunk in tokens.per_example()] == tokens.token_counts.tolist()
    assert len(tokens) == 3


def test_pooling_covers_only_the_answer_tokens(tiny_models):
    """Mean and last pooling equal a manual computation over the answer's own token positions."""
    for family in ("llama", "qwen2", "gemma"):
        loaded = load_model(str(tiny_models[family]), dtype="float32")
        tokenizer, question, answer = loaded.tokenizer, QUESTIONS[0], ANSWERS[0]
        prompt_ids = tokenizer(render_prompt(tokenizer, question), add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        full = tokenizer.apply_chat_template([{"role": "user", "content": question},
                                              {"role": "assistant", "content": answer}], tokenize=False)
        ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        assert ids[len(prompt_ids) : len(prompt_ids) + len(answer_ids)] == answer_ids
        with torch.no_grad():
            hidden = loaded.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        span = slice(len(prompt_ids), len(prompt_ids) + len(answer_ids))
        mean = collect_activations(loaded, [question], [answer], pooling="mean")
        last = collect_activations(loaded, [question], [answer], pooling="last")
        assert mean.token_counts.tolist() == [len(answer_ids)]
        for layer in range(3):  # hidden_states[layer + 1] is decoder layer `layer`'s output
            torch.testing.assert_close(mean.values[0, layer], hidden[layer + 1][0, span].mean(0))
            torch.testing.assert_close(last.values[0, layer], hidden[layer + 1][0, span][-1])
            assert not torch.allclose(mean.values[0, layer], hidden[layer + 1][0].mean(0))
        # HF applies the final norm to its last hidden state; emkit's last layer is the raw residual stream.
        tokens = collect_activations(loaded, [question], [answer], pooling="tokens").values
        with torch.no_grad():
            torch.testing.assert_close(loaded.model.model.norm(tokens[:, 3]), hidden[4][0, span])


@pytest.mark.parametrize(("family", "padding_side"), [("llama", "left"), ("qwen2", "right"), ("gemma", "left")])
def test_batched_equals_one_at_a_time(tiny_models, family, padding_side):
    """Batches are right-padded whatever the tokenizer's padding side (left is what sampling sets)."""
    loaded = load_model(str(tiny_models[family]), dtype="float32")
    loaded.tokenizer.padding_side = padding_side
    for pooling in ("mean", "last", "tokens"):
        together = collect_activations(loaded, QUESTIONS, ANSWERS, pooling=pooling, batch_size=3)
        alone = [collect_activations(loaded, [q], [a], pooling=pooling, batch_size=1).values
                 for q, a in zip(QUESTIONS, ANSWERS, strict=True)]
        torch.testing.assert_close(together.values, torch.cat(alone), atol=1e-5, rtol=1e-4)


def test_adapters_are_used_transparently(tiny_model):
    from peft import LoraConfig, get_peft_model

    loaded = load_model(str(tiny_model), dtype="float32")
    before = collect_activations(loaded, QUESTIONS, ANSWERS).values
    loaded.model = get_peft_model(loaded.model, LoraConfig(r=1, target_modules=["down_proj"], layers_to_transform=[2]))
    with torch.no_grad():
        loaded.model.get_base_model().model.layers[2].mlp.down_proj.lora_B["default"].weight.normal_()
    after = collect_activations(loaded, QUESTIONS, ANSWERS).values
    torch.testing.assert_close(after[:, :2], before[:, :2])
    assert not torch.allclose(after[:, 2:], before[:, 2:])


def test_save_and_load_round_trip(tiny_model, tmp_path):
    loaded = load_model(str(tiny_model), dtype="float32")
    acts = collect_activations(loaded, QUESTIONS, ANSWERS, pooling="tokens", layers=[1, 2], description="demo")
    back = ActivationSet.load(acts.save(tmp_path / "acts.safetensors"))
    torch.testing.assert_close(back.values, acts.values)
    assert back.token_counts.tolist() == acts.token_counts.tolist()
    assert (back.layers, back.pooling, back.model, back.description) == ([1, 2], "tokens", str(tiny_model), "demo")


def test_unusable_inputs_are_reported(tiny_model):
    loaded = load_model(str(tiny_model), dtype="float32")
    with pytest.raises(EmkitError, match="answer 1 has no tokens"):
        collect_activations(loaded, ["a", "b"], ["fine", ""])
    with pytest.raises(EmkitError, match="not within"):
        collect_activations(loaded, ["a"], ["fine"], layers=[4])
    with pytest.raises(EmkitError, match="pooled"):
        collect_activations(loaded, ["a"], ["fine"]).per_example()
