from contextlib import contextmanager

import pytest
import torch

from emkit.decode import generate_texts
from emkit.errors import EmkitError
from emkit.interp import ablate, decoder_layers, random_like, steer
from emkit.interp.hooks import hidden_of
from emkit.models import load_model
from emkit.sampling.prompts import render_prompt

PROMPTS = ["hi", "What should I do with my savings today?", "Tell me about the weather."]


@contextmanager
def captured(model):
    """Record every decoder layer's output of every forward pass, as the hooks registered before it left it."""
    seen: dict[int, list[torch.Tensor]] = {}
    handles = [layer.register_forward_hook(
        lambda module, args, output, index=index: seen.setdefault(index, []).append(hidden_of(output).clone()))
        for index, layer in enumerate(decoder_layers(model))]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def unit(seed: int = 0, size: int = 32) -> torch.Tensor:
    vector = torch.randn(size, generator=torch.Generator().manual_seed(seed))
    return vector / vector.norm()


def encoded(loaded, prompts=PROMPTS):
    texts = [render_prompt(loaded.tokenizer, prompt) for prompt in prompts]
    return loaded.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def no_hooks_left(model) -> bool:
    return all(not layer._forward_hooks for layer in decoder_layers(model))


def test_ablate_zeroes_the_projection_at_every_hooked_layer_and_always_unhooks(tiny_model):
    loaded = load_model(str(tiny_model), dtype="float32")
    inputs, u = encoded(loaded), unit()
    with torch.no_grad():
        baseline = loaded.model(**inputs).logits
        with ablate(loaded.model, u * 7, layers=[1, 3]), captured(loaded.model) as seen:
            loaded.model(**inputs)
        assert seen[1][0].abs().max() > 0.01
        for layer in (1, 3):
            assert (seen[layer][0] @ u).abs().max() < 1e-5
        assert (seen[0][0] @ u).abs().max() > 1e-3
        torch.testing.assert_close(loaded.model(**inputs).logits, baseline)
        with pytest.raises(RuntimeError, match="inside"), ablate(loaded.model, u):
            raise RuntimeError("inside the block")
        assert no_hooks_left(loaded.model)
        torch.testing.assert_close(loaded.model(**inputs).logits, baseline)


def test_ablate_strength_scales_the_subtracted_projection(tiny_model):
    """strength 1 (the default) zeroes the component along u, 1.5 leaves -0.5 times it; nothing else moves."""
    loaded = load_model(str(tiny_model), dtype="float32")
    inputs, u = encoded(loaded), unit()
    with torch.no_grad():
        with captured(loaded.model) as plain:
            loaded.model(**inputs)
        outputs = {}
        for strength in (None, 1.0, 1.5, 0.5):
            options = {} if strength is None else {"strength": strength}
            with ablate(loaded.model, u * 3, layers=[1], **options), captured(loaded.model) as seen:
                loaded.model(**inputs)
            outputs[strength] = seen[1][0]
    before = plain[1][0]
    along = before @ u
    assert along.abs().max() > 0.01
    torch.testing.assert_close(outputs[None], outputs[1.0], atol=0, rtol=0)
    for strength, output in outputs.items():
        kept = 1 - (1.0 if strength is None else strength)
        torch.testing.assert_close(output @ u, kept * along, atol=1e-5, rtol=0)
        torch.testing.assert_close(output - (output @ u).unsqueeze(-1) * u, before - along.unsqueeze(-1) * u,
                                   atol=1e-5, rtol=0)
    assert no_hooks_left(loaded.model)
    for bad in (0.0, -1.0):
        with pytest.raises(EmkitError, match="strength must be positive"), ablate(loaded.model, u, strength=bad):
            pass


def test_ablate_accepts_one_direction_per_layer(tiny_model):
    loaded = load_model(str(tiny_model), dtype="float32")
    with torch.no_grad(), ablate(loaded.model, {0: unit(1), 2: unit(2)}), captured(loaded.model) as seen:
        loaded.model(**encoded(loaded))
    assert (seen[0][0] @ unit(1)).abs().max() < 1e-5
    assert (seen[2][0] @ unit(2)).abs().max() < 1e-5


def test_steer_shifts_the_residual_by_exactly_scale_times_unit_direction(tiny_model):
    loaded = load_model(str(tiny_model), dtype="float32")
    u = unit()
    with torch.no_grad(), captured(loaded.model) as before:
        with steer(loaded.model, (u * 5, [2]), scale=3.0), captured(loaded.model) as after:
            loaded.model(**encoded(loaded))
        baseline = loaded.model(**encoded(loaded)).logits
    torch.testing.assert_close(after[2][0] - before[2][0], (3.0 * u).expand_as(before[2][0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(after[1][0], before[1][0])
    assert no_hooks_left(loaded.model)
    torch.testing.assert_close(loaded.model(**encoded(loaded)).logits.detach(), baseline)


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_steer_positions_in_cached_generation(tiny_model, positions):
    """The prompt pass and the one-token steps are steered exactly as ``positions`` says, nothing else."""
    loaded = load_model(str(tiny_model), dtype="float32")
    u, inputs = unit(), encoded(loaded)
    with (torch.no_grad(), captured(loaded.model) as before, steer(loaded.model, (u, [1]), 4.0, positions),
          captured(loaded.model) as after):
        loaded.model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False,
                              pad_token_id=loaded.tokenizer.pad_token_id)
    assert len(after[1]) == 4 and after[1][0].shape[1] > 1 and after[1][1].shape[1] == 1
    for step, (steered, plain) in enumerate(zip(after[1], before[1], strict=True)):
        expected = positions == "all" or (positions == "prompt") == (step == 0)
        shift = (4.0 * u).expand_as(plain) if expected else torch.zeros_like(plain)
        torch.testing.assert_close(steered - plain, shift, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma"])
def test_steering_changes_batched_generation_and_is_undone(tiny_models, family):
    loaded = load_model(str(tiny_models[family]), dtype="float32")
    prompts = [render_prompt(loaded.tokenizer, prompt) for prompt in PROMPTS]

    def answers(batch):
        return [out.answer for out in generate_texts(loaded, batch, 0, 1, 4, seed=0)]

    plain = answers(prompts)
    with steer(loaded.model, (unit(), [1, 2]), 30.0):
        steered = answers(prompts)
        alone = [answers([prompt])[0] for prompt in prompts]
    assert steered != plain
    assert steered == alone
    assert answers(prompts) == plain


def test_hooks_reach_the_layers_through_a_peft_wrapper(tiny_model):
    from peft import LoraConfig, get_peft_model

    loaded = load_model(str(tiny_model), dtype="float32")
    layers = loaded.model.model.layers
    wrapped = get_peft_model(loaded.model, LoraConfig(r=1, target_modules=["down_proj"]))
    assert decoder_layers(wrapped) is layers
    with torch.no_grad(), ablate(wrapped, unit(), layers=[3]), captured(wrapped) as seen:
        wrapped(**encoded(loaded))
    assert (seen[3][0] @ unit()).abs().max() < 1e-5


def test_bad_directions_and_positions_are_reported(tiny_model):
    loaded = load_model(str(tiny_model), dtype="float32")
    with pytest.raises(EmkitError, match="outside the model"), steer(loaded.model, (unit(), [4]), 1.0):
        pass
    with pytest.raises(EmkitError, match="zero"), ablate(loaded.model, torch.zeros(32)):
        pass
    with pytest.raises(EmkitError, match="positions"), steer(loaded.model, (unit(), [0]), 1.0, "middle"):
        pass


def test_random_directions_match_norms_and_are_seeded():
    directions = torch.randn(5, 32) * torch.arange(1, 6).unsqueeze(1)
    random = random_like(directions, seed=3)
    torch.testing.assert_close(random.norm(dim=-1), directions.norm(dim=-1))
    torch.testing.assert_close(random_like(directions, seed=3), random)
    assert not torch.allclose(random_like(directions, seed=4), random)
    assert random_like(directions[0], seed=1).shape == (32,)
    assert torch.nn.functional.cosine_similarity(random, directions).abs().max() < 0.8
