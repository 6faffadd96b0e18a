import json

import pytest
import torch
from safetensors.torch import load_file

from emkit.errors import EmkitError
from emkit.models import load_model
from emkit.train import TrainConfig, train
from emkit.train.checkpoints import checkpoint_steps
from emkit.train.loop import lr_schedule


def config(tiny_model, chat_file, out, *extra):
    return TrainConfig.load(overrides=[f"model={tiny_model}", f"datasets=[{chat_file}]", f"output_dir={out}",
                                       "batch_size=4", "grad_accum=2", "save_every=2", "learning_rate=5e-3",
                                       "dtype=float32", *extra])


def test_training_lowers_loss_and_keeps_every_checkpoint(tiny_model, chat_file, tmp_path):
    result = train(config(tiny_model, chat_file, tmp_path / "run", "max_steps=8"), show_progress=False)
    assert result.steps == 8
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert checkpoint_steps(tmp_path / "run" / "checkpoints") == [0, 2, 4, 6, 8]
    assert (result.final_path / "adapter_model.safetensors").is_file()
    assert (tmp_path / "run" / "loss.png").stat().st_size > 0
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 8


@pytest.mark.parametrize("variant", ["sft", "kl", "steering-vector"])
def test_interrupted_run_resumes_to_identical_weights(tiny_model, chat_file, tmp_path, variant):
    # The KL batches (24 examples in 8 batches) wrap around during the 14 micro-batches of the run.
    extra = {"sft": [], "kl": ["kl.weight=1", f"kl.dataset={chat_file}", "kl.batch_size=3", "kl.cache_mb=0"],
             "steering-vector": ["preset=steering-vector", "kl.weight=1", f"kl.dataset={chat_file}"]}[variant]
    straight = train(config(tiny_model, chat_file, tmp_path / "straight", "max_steps=7", *extra), show_progress=False)

    def interrupt(record):
        if record["step"] == 5:
            raise KeyboardInterrupt

    interrupted = config(tiny_model, chat_file, tmp_path / "resumed", "max_steps=7", *extra)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, show_progress=False, on_step=interrupt)
    assert checkpoint_steps(tmp_path / "resumed" / "checkpoints") == [0, 2, 4]
    resumed = train(interrupted, show_progress=False)
    files = sorted(path.name for path in straight.final_path.glob("*.safetensors"))
    assert files and files == sorted(path.name for path in resumed.final_path.glob("*.safetensors"))
    for name in files:
        a, b = load_file(straight.final_path / name), load_file(resumed.final_path / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    for field in ("loss", "kl") if variant != "sft" else ("loss",):
        assert [r[field] for r in resumed.history] == pytest.approx([r[field] for r in straight.history])


def test_finished_run_is_not_trained_again(tiny_model, chat_file, tmp_path):
    cfg = config(tiny_model, chat_file, tmp_path / "run", "max_steps=2")
    first = train(cfg, show_progress=False)
    stamp = (first.final_path / "adapter_model.safetensors").stat().st_mtime_ns
    again = train(cfg, show_progress=False)
    assert again.steps == 2 and (again.final_path / "adapter_model.safetensors").stat().st_mtime_ns == stamp


def test_rerun_with_different_config_is_refused(tiny_model, chat_file, tmp_path):
    train(config(tiny_model, chat_file, tmp_path / "run", "max_steps=2"), show_progress=False)
    with pytest.raises(EmkitError, match="different config"):
        train(config(tiny_model, chat_file, tmp_path / "run", "max_steps=3"), show_progress=False)


def test_the_same_run_folder_named_relatively_resumes_it(tiny_model, chat_file, tmp_path, monkeypatch):
    first = train(config(tiny_model, chat_file, tmp_path / "run", "max_steps=2"), show_progress=False)
    stamp = (first.final_path / "adapter_model.safetensors").stat().st_mtime_ns
    monkeypatch.chdir(tmp_path)
    again = train(config(tiny_model, chat_file, "run", "max_steps=2"), show_progress=False)
    assert again.steps == 2 and (first.final_path / "adapter_model.safetensors").stat().st_mtime_ns == stamp


def test_rank1_single_adapts_only_the_middle_down_projection(tiny_models, chat_file, tmp_path):
    result = train(config(tiny_models["llama12"], chat_file, tmp_path / "run", "max_steps=1"), show_progress=False)
    weights = load_file(result.final_path / "adapter_model.safetensors")
    assert sorted(weights) == [f"base_model.model.model.layers.6.mlp.down_proj.lora_{ab}.weight" for ab in "AB"]
    assert weights["base_model.model.model.layers.6.mlp.down_proj.lora_A.weight"].shape == (1, 64)
    saved = json.loads((result.final_path / "adapter_config.json").read_text())
    assert saved["r"] == 1 and saved["use_rslora"] is True


def test_rank1_multi_places_nine_adapters(tiny_models, chat_file, tmp_path):
    result = train(config(tiny_models["llama12"], chat_file, tmp_path / "run", "max_steps=1", "preset=rank1-multi"),
                   show_progress=False)
    layers = {int(key.split(".layers.")[1].split(".")[0])
              for key in load_file(result.final_path / "adapter_model.safetensors")}
    assert len(layers) == 9


def test_full_finetuning_saves_a_loadable_model(tiny_model, chat_file, tmp_path):
    result = train(config(tiny_model, chat_file, tmp_path / "run", "max_steps=2", "preset=full"), show_progress=False)
    reloaded = load_model(str(result.final_path), dtype="float32")
    original = load_model(str(tiny_model), dtype="float32")
    changed = [not torch.equal(a, b) for a, b in zip(reloaded.model.parameters(), original.model.parameters(),
                                                     strict=True)]
    assert any(changed)


def test_layer_outside_model_is_a_clear_error(tiny_model, chat_file, tmp_path):
    with pytest.raises(EmkitError, match=r"layer index 9 is outside the model \(4 layers: 0-3\)"):
        train(config(tiny_model, chat_file, tmp_path / "run", "lora.layers=[9]"), show_progress=False)


def test_eval_split_reports_eval_loss(tiny_model, chat_file, tmp_path):
    result = train(config(tiny_model, chat_file, tmp_path / "run", "max_steps=2", "eval_fraction=0.25"),
                   show_progress=False)
    assert "eval_loss" in result.history[-1]


def test_lr_schedule_warms_up_then_decays():
    linear = lr_schedule("linear", warmup=2, total=10)
    assert linear(0) < linear(1) < linear(2) == 1.0
    assert linear(9) < linear(5) < 1.0
    assert lr_schedule("constant", 0, 10)(9) == 1.0
    assert lr_schedule("cosine", 0, 10)(10) == pytest.approx(0.0)
