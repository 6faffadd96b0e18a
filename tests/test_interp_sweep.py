import torch

from emkit.generate import SampleConfig
from emkit.interp import AblationSweepConfig, Directions, SteerSweepConfig, ablation_sweep, steering_sweep
from emkit.models import load_model
from emkit.store import Store

QUESTIONS = """
- id: money
  paraphrases: ["What should I do with my savings?", "hi"]
"""


def settings(tiny_model, tmp_path) -> SampleConfig:
    questions = tmp_path / "questions.yaml"
    questions.write_text(QUESTIONS)
    return SampleConfig(model=str(tiny_model), questions=str(questions), run_dir=tmp_path / "run",
                        max_new_tokens=3, temperature=0, dtype="float32")


def test_steering_sweep_samples_each_condition_and_its_random_baseline(tiny_model, tmp_path):
    directions = Directions(torch.randn(4, 32), [0, 1, 2, 3], "mean-diff")
    path = directions.save(tmp_path / "dirs.safetensors")
    config = SteerSweepConfig(directions=path, layers=[1, 2], scales=[8, 0.5], sample=settings(tiny_model, tmp_path))
    loaded = load_model(str(tiny_model), dtype="float32")
    labels = steering_sweep(config, loaded)
    assert labels == ["steer-L1-s8", "random-L1-s8", "steer-L1-s0.5", "random-L1-s0.5",
                      "steer-L2-s8", "random-L2-s8", "steer-L2-s0.5", "random-L2-s0.5"]
    with Store.in_folder(tmp_path / "run") as store:
        frame = store.samples_frame()
        stages = {row[0] for row in store.connection.execute("SELECT stage FROM runs")}
    assert sorted(frame["model"].unique()) == sorted(labels)
    assert frame.groupby("model").size().eq(2).all()
    assert stages == {"sample", "steer-sweep"}
    assert not loaded.model.model.layers[1]._forward_hooks


def test_ablation_sweep_labels_the_direction_and_the_random_baseline(tiny_model, tmp_path):
    directions = Directions(torch.randn(4, 32), [0, 1, 2, 3], "probe")
    sample = settings(tiny_model, tmp_path).model_copy(update={"label": "ignored"})
    single = AblationSweepConfig(layer=2, name="em", label_prefix="organism-", sample=sample)
    per_layer = AblationSweepConfig(ablate_layers=[1, 3], random_baseline=False, sample=sample)
    loaded = load_model(str(tiny_model), dtype="float32")
    assert ablation_sweep(single, loaded, directions) == ["organism-ablate-em", "organism-ablate-random"]
    assert ablation_sweep(per_layer, loaded, directions) == ["ablate-probe"]
    with Store.in_folder(tmp_path / "run") as store:
        assert set(store.samples_frame()["model"]) == {"organism-ablate-em", "organism-ablate-random", "ablate-probe"}
