import pytest
import torch

from emkit.errors import EmkitError
from emkit.models import ADAPTER_FILE, MODEL_FILE, load_model
from emkit.train import TrainConfig
from emkit.train.solutions import (
    FullModelSolution,
    LoraSolution,
    SteeringSolution,
    attached_solution,
    make_solution,
    solution_class,
)
from emkit.train.steering_vector import VECTOR_FILE, SteeringVector

IDS = torch.tensor([[5, 17, 29, 41, 53, 7]])
WEIGHTS = {"rank1-single": ADAPTER_FILE, "steering-vector": VECTOR_FILE, "full": MODEL_FILE}


def solution_for(tiny_model, preset):
    config = TrainConfig.load(overrides=[f"model={tiny_model}", "datasets=[unused.jsonl]", f"preset={preset}"])
    torch.manual_seed(0)
    return make_solution(load_model(str(tiny_model), dtype="float32").model, config)


def logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


def move(tensors):
    with torch.no_grad():
        for tensor in tensors:
            tensor.add_(torch.randn_like(tensor))


def test_each_preset_trains_its_kind_of_solution():
    assert solution_class("rank1-multi") is solution_class("lora-all") is LoraSolution
    assert solution_class("full") is FullModelSolution and solution_class("steering-vector") is SteeringSolution
    assert [solution_class(p).folder for p in ("lora-all", "full", "steering-vector")] == ["adapter", "model",
                                                                                         "steering_vector"]
    assert [solution_class(p).trains_base_weights for p in ("lora-all", "full", "steering-vector")] == [False, True,
                                                                                                      False]


@pytest.mark.parametrize("preset", ["rank1-single", "steering-vector"])
def test_disabled_runs_the_base_model(tiny_model, preset):
    solution = solution_for(tiny_model, preset)
    base = logits(load_model(str(tiny_model), dtype="float32").model)
    move(solution.update_tensors())
    assert not torch.allclose(logits(solution.model), base)
    with solution.disabled() as module:
        torch.testing.assert_close(logits(module), base)
    assert not torch.allclose(logits(solution.model), base)
    assert all(tensor.requires_grad for tensor in solution.trainable())


def test_a_full_fine_tune_keeps_its_base_only_when_asked(tiny_model):
    solution = solution_for(tiny_model, "full")
    base = logits(solution.model)
    with solution.disabled() as module:
        assert module is solution.model
    solution.keep_base(torch.float32)
    move(solution.trainable()[:3])
    with solution.disabled() as module:
        torch.testing.assert_close(logits(module), base)
    assert not torch.allclose(logits(solution.model), base)
    with pytest.raises(EmkitError, match="not linear"):
        solution.update_tensors()


@pytest.mark.parametrize("preset", ["rank1-single", "steering-vector", "full"])
def test_saved_weights_load_back_into_a_fresh_solution(tiny_model, tmp_path, preset):
    solution = solution_for(tiny_model, preset)
    move(solution.trainable())
    solution.save(tmp_path, tokenizer=load_model(str(tiny_model), dtype="float32").tokenizer)
    assert (tmp_path / WEIGHTS[preset]).is_file()
    assert (tmp_path / "tokenizer.json").is_file() == (preset == "full")
    fresh = solution_for(tiny_model, preset)
    fresh.load(tmp_path)
    torch.testing.assert_close(logits(fresh.model), logits(solution.model))


def test_attached_solutions_are_detached_afterwards(tiny_model, tmp_path):
    loaded = load_model(str(tiny_model), dtype="float32")
    plain = logits(loaded.model)
    adapter = solution_for(tiny_model, "rank1-single")
    move(adapter.update_tensors())
    adapter.save(tmp_path / "adapter")
    SteeringVector(torch.randn(32), layer=1, site="residual", alpha=2.0).save(tmp_path / "v.safetensors")
    for path, kind in ((tmp_path / "adapter", "adapter"), (tmp_path / "v.safetensors", "steering vector")):
        with attached_solution(loaded.model, path, torch.device("cpu")) as solution:
            assert solution.kind == kind and solution.update_norm() > 0
            assert not torch.allclose(logits(solution.model), plain)
        torch.testing.assert_close(logits(loaded.model), plain)
    SteeringVector(torch.randn(16), layer=1, site="residual", alpha=2.0).save(tmp_path / "narrow.safetensors")
    narrow = attached_solution(loaded.model, tmp_path / "narrow.safetensors", torch.device("cpu"))
    with pytest.raises(EmkitError, match="has width 16, the model 32"):
        narrow.__enter__()
