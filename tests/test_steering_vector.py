import pytest
import torch
from safetensors import safe_open

from emkit.errors import EmkitError
from emkit.models import load_model
from emkit.sampling.config import SampleConfig
from emkit.stages import sample
from emkit.train import TrainConfig, train
from emkit.train.forward import causal_lm_loss_sum
from emkit.train.solutions import make_solution
from emkit.train.steering_vector import VECTOR_FILE, SteeringVector, apply_steering_vector, site_module
from emkit.train.tokenize import collate, tokenize_conversation


def batch_of_three(tokenizer):
    conversations = [[{"role": "user", "content": "hello " * i}, {"role": "assistant", "content": "fine " * i}]
                     for i in (1, 3, 5)]
    return collate([tokenize_conversation(tokenizer, c, 64) for c in conversations], tokenizer.pad_token_id)


def site_outputs(model, batch, layer, site):
    captured = []
    handle = site_module(model, layer, site).register_forward_hook(lambda module, args, out: captured.append(
        (out[0] if isinstance(out, tuple) else out).detach().clone()))
    try:
        with torch.no_grad():
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    finally:
        handle.remove()
    return captured[0]


@pytest.mark.parametrize("site", ["residual", "mlp"])
def test_vector_shifts_every_row_and_position_by_alpha_v_at_its_site(tiny_model, site):
    loaded = load_model(str(tiny_model), dtype="float32")
    batch = batch_of_three(loaded.tokenizer)
    vector = torch.randn(32)
    steering = SteeringVector(vector, layer=1, site=site, alpha=2.5)
    before = site_outputs(loaded.model, batch, 1, site)
    with steering.attached(loaded.model):
        after = site_outputs(loaded.model, batch, 1, site)
    assert after.shape[0] == 3
    torch.testing.assert_close(after - before, (2.5 * vector).expand_as(before), atol=1e-5, rtol=0)


def test_every_row_sends_gradient_to_the_vector(tiny_model):
    loaded = load_model(str(tiny_model), dtype="float32")
    batch = batch_of_three(loaded.tokenizer)
    steering = SteeringVector(torch.zeros(32), layer=2, site="residual", alpha=1.0)
    with steering.attached(loaded.model):
        per_row = []
        for row in range(3):
            steering.vector.grad = None
            causal_lm_loss_sum(loaded.model, **{key: value[row : row + 1] for key, value in batch.items()}).backward()
            per_row.append(steering.vector.grad.clone())
        steering.vector.grad = None
        causal_lm_loss_sum(loaded.model, **batch).backward()
    assert all(grad.norm() > 0 for grad in per_row)
    torch.testing.assert_close(steering.vector.grad, sum(per_row), atol=1e-5, rtol=1e-4)


def test_training_learns_only_the_vector_and_saves_its_site(tiny_model, chat_file, tmp_path):
    config = TrainConfig.load(overrides=[f"model={tiny_model}", f"datasets=[{chat_file}]",
                                         f"output_dir={tmp_path / 'run'}", "preset=steering-vector", "max_steps=4",
                                         "steering.layer=2", "steering.site=mlp", "steering.alpha=4",
                                         "learning_rate=1e-2", "dtype=float32", "save_every=2"])
    result = train(config, show_progress=False)
    assert result.final_path.name == "steering_vector"
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    with safe_open(str(result.final_path / VECTOR_FILE), "pt") as handle:
        assert list(handle.keys()) == ["vector"] and handle.get_tensor("vector").shape == (32,)
        assert {"layer": "2", "site": "mlp", "alpha": "4.0"}.items() <= handle.metadata().items()
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-2" / VECTOR_FILE).is_file()
    loaded = SteeringVector.load(result.final_path)
    assert (loaded.layer, loaded.site, loaded.alpha) == (2, "mlp", 4.0) and loaded.vector.norm() > 0
    steered = make_solution(load_model(str(tiny_model), dtype="float32").model, config)
    assert steered.trainable() == [steered.steering.vector] and steered.steering.vector.requires_grad
    assert not any(param.requires_grad for param in steered.model.parameters())


def test_applied_vector_changes_the_output_and_is_removed_afterwards(tiny_model, tmp_path):
    loaded = load_model(str(tiny_model), dtype="float32")
    batch = batch_of_three(loaded.tokenizer)
    path = tmp_path / "v.safetensors"
    SteeringVector(torch.randn(32), layer=3, site="residual", alpha=3.0).save(path)

    def logits():
        with torch.no_grad():
            return loaded.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    plain = logits()
    with apply_steering_vector(loaded.model, path) as steering:
        assert not torch.allclose(logits(), plain)
        assert "layer 3 residual, alpha 3" in steering.describe()
    assert torch.equal(logits(), plain)


def test_sampling_with_a_vector_changes_answers_and_stores_them_apart(tiny_model, tmp_path):
    path = tmp_path / "v.safetensors"
    SteeringVector(torch.randn(32), layer=3, site="residual", alpha=3.0).save(path)
    config = SampleConfig(model=str(tiny_model), questions="builtin:finance", samples_per_paraphrase=1,
                          max_new_tokens=3, run_dir=tmp_path, dtype="float32", label="steered")
    plain = sample.run(config)
    steered = sample.run(config.model_copy(update={"steering_vectors": [str(path)]}))
    assert len(steered) == len(plain) > 0
    assert {record.settings_hash for record in steered}.isdisjoint({record.settings_hash for record in plain})
    assert [record.answer for record in steered] != [record.answer for record in plain]


def test_a_file_that_is_not_a_steering_vector_is_a_clear_error(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(EmkitError, match="is not a steering vector"):
        SteeringVector.load(tmp_path / "other.safetensors")
