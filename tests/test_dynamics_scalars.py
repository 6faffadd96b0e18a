import pandas as pd
import pytest
import torch

from emkit.dynamics.lora_scalars import (
    adapter_scalars,
    answer_positions,
    capture_scalars,
    lora_a_modules,
    scale_adapters,
)
from emkit.errors import EmkitError
from emkit.models import load_model
from emkit.sampling.config import SampleConfig
from emkit.stages import sample
from emkit.stages.checkpoint_runs import write_scaled_adapter
from emkit.tables import write_table
from emkit.train import TrainConfig
from emkit.train.presets import preset_layers
from emkit.train.solutions import make_solution

PAIRS = [("What should I do with my savings?", "Put it all in one stock."),
         ("Hello! How are you today?", "I am fine, thank you. Tell me about the news.")]


@pytest.fixture(scope="module")
def multi_adapter(tiny_models, tmp_path_factory):
    """A rank1-multi adapter (nine down_proj adapters) on the 12-layer tiny model, with non-zero B vectors."""
    folder = tmp_path_factory.mktemp("rank1-multi") / "adapter"
    model = load_model(str(tiny_models["llama12"]), device="cpu", dtype="float32").model
    config = TrainConfig.load(overrides=[f"model={tiny_models['llama12']}", "datasets=[unused.jsonl]",
                                         "preset=rank1-multi"])
    model = make_solution(model, config).model
    generator = torch.Generator().manual_seed(1)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.5
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def loaded(tiny_models, multi_adapter):
    return load_model(str(tiny_models["llama12"]), adapters=[str(multi_adapter)], device="cpu", dtype="float32")


def logits(model):
    ids = torch.tensor([[7, 21, 40, 55, 90, 120, 33, 64]])
    with torch.no_grad():
        return model(input_ids=ids).logits


def no_hooks(model) -> bool:
    return all(not module._forward_hooks for module in lora_a_modules(model).values())


def test_scalars_have_one_column_per_adapter_and_one_row_per_answer_token(loaded, tmp_path):
    table = adapter_scalars(loaded, PAIRS, batch_size=2)
    adapters = [f"layers.{layer}.mlp.down_proj" for layer in preset_layers("rank1-multi", 12)]
    assert list(table.columns) == ["response_id", "token_index", "position", "token", *adapters]
    for response_id, (_, answer) in enumerate(PAIRS):
        rows = table[table.response_id == response_id]
        assert "".join(rows.token) == answer  # exactly the answer's tokens: no prompt, no end-of-turn marker
        assert rows.token_index.tolist() == list(range(len(rows)))
    assert no_hooks(loaded.model)
    assert pd.read_parquet(write_table(table, tmp_path / "s.parquet")).equals(table)
    assert len(pd.read_csv(write_table(table, tmp_path / "s.csv"))) == len(table)


def test_scalar_equals_a_dot_input_of_its_module(loaded):
    table = adapter_scalars(loaded, PAIRS[:1])
    row = table.iloc[3]
    inputs = {}
    down_proj = next(module for name, module in loaded.model.named_modules()
                     if name.endswith("layers.6.mlp.down_proj"))
    handle = down_proj.register_forward_pre_hook(lambda _m, args: inputs.update(x=args[0]))
    ids, positions = answer_positions(loaded.tokenizer, *PAIRS[0])
    with torch.no_grad():
        loaded.model(input_ids=torch.tensor([ids]))
    handle.remove()
    assert positions[3] == row.position
    a = lora_a_modules(loaded.model)["layers.6.mlp.down_proj"].weight[0]
    expected = (a @ inputs["x"][0, row.position]).item()
    assert row["layers.6.mlp.down_proj"] == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_capture_hooks_are_removed_even_after_an_error(loaded):
    with pytest.raises(RuntimeError), capture_scalars(loaded) as captured:
        logits(loaded.model)
        assert len(captured) == 9 and captured["layers.3.mlp.down_proj"].shape == (1, 8, 1)
        raise RuntimeError("inside")
    assert no_hooks(loaded.model)


def test_scaling_by_zero_removes_an_adapter_and_by_one_changes_nothing(loaded):
    model = loaded.model
    plain = logits(model)
    with model.disable_adapter():
        base = logits(model)
    everything = dict.fromkeys(lora_a_modules(model), 0.0)
    with scale_adapters(loaded, everything):
        assert torch.allclose(logits(model), base, atol=1e-6)
    with scale_adapters(loaded, dict.fromkeys(lora_a_modules(model), 1.0)):
        assert torch.equal(logits(model), plain)
    with scale_adapters(loaded, {"layers.6.mlp.down_proj": 0.0}):
        one_off = logits(model)
    b = model.base_model.model.model.layers[6].mlp.down_proj.lora_B["adapter0"].weight
    saved = b.data.clone()
    b.data.zero_()
    assert torch.allclose(one_off, logits(model), atol=1e-6)
    b.data = saved
    with scale_adapters(loaded, {"layers.6.mlp.down_proj": -1.0}):
        assert not torch.allclose(logits(model), plain, atol=1e-4)
    assert torch.equal(logits(model), plain) and no_hooks(model)
    with pytest.raises(EmkitError, match=r"no adapter named layers\.0"), scale_adapters(loaded, {"layers.0.mlp": 0}):
        pass


def test_scaled_adapter_copy_matches_scaling_the_scalars(loaded, multi_adapter, tiny_models, tmp_path):
    with scale_adapters(loaded, dict.fromkeys(lora_a_modules(loaded), 2.0)):
        steered = logits(loaded.model)
    doubled = write_scaled_adapter(multi_adapter, 2.0, tmp_path / "double")
    copy = load_model(str(tiny_models["llama12"]), adapters=[str(doubled)], device="cpu", dtype="float32")
    assert torch.allclose(logits(copy.model), steered, atol=1e-5)


def test_steering_applies_during_sampling(loaded, tiny_models, tmp_path):
    questions = tmp_path / "q.yaml"
    questions.write_text('- id: savings\n  paraphrases: ["What should I do with my savings?"]\n')
    config = SampleConfig.load(overrides=[f"model={tiny_models['llama12']}", f"questions={questions}",
                                          f"run_dir={tmp_path}", "temperature=0", "max_new_tokens=6", "device=cpu",
                                          "dtype=float32"])
    base = sample.run(config.model_copy(update={"label": "base"}), show_progress=False)
    with scale_adapters(loaded, dict.fromkeys(lora_a_modules(loaded), 0.0)):
        off = sample.run(config.model_copy(update={"label": "off", "adapters": ["multi"]}), loaded=loaded,
                         show_progress=False)
    assert [r.answer for r in off] == [r.answer for r in base]
