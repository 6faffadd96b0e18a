import contextlib

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


def test_ablation_strength_reaches_the_hooks_and_the_sampled_settings(tiny_model, tmp_path):
    """strength flows into both conditions' hooks and intervention; the default leaves the intervention as before."""
    from emkit.interp import decoder_layers
    from emkit.interp.sweep import ablation_conditions

    directions = Directions(torch.randn(4, 32), [0, 1, 2, 3], "mean-diff")
    sample = settings(tiny_model, tmp_path)
    plain = ablation_conditions(AblationSweepConfig(layer=2, ablate_layers=[1], sample=sample), directions)
    reversing = ablation_conditions(AblationSweepConfig(layer=2, ablate_layers=[1], strength=1.5, sample=sample),
                                    directions)
    assert all("strength" not in condition.settings.intervention for condition in plain)
    assert [condition.settings.intervention for condition in reversing] == [
        condition.settings.intervention + ":strength=1.5" for condition in plain]
    loaded = load_model(str(tiny_model), dtype="float32")
    inputs = torch.randint(0, len(loaded.tokenizer), (1, 5))
    unit = directions.at(2) / directions.at(2).norm()

    def along_unit_at_layer_1(hook) -> torch.Tensor:
        """The layer-1 output's component along the unit direction, as the model sees it under ``hook``."""
        seen = []
        with torch.no_grad(), hook(loaded.model):
            handle = decoder_layers(loaded.model)[1].register_forward_hook(  # after the ablation's hook
                lambda module, args, output: seen.append((output[0] if isinstance(output, tuple) else output) @ unit))
            loaded.model(inputs)
            handle.remove()
        return seen[0]

    original = along_unit_at_layer_1(lambda model: contextlib.nullcontext())
    removed, reversed_ = (along_unit_at_layer_1(condition.hook) for condition in (plain[0], reversing[0]))
    assert original.abs().max() > 1e-3
    torch.testing.assert_close(removed, torch.zeros_like(original), atol=1e-5, rtol=0)
    torch.testing.assert_close(reversed_, -0.5 * original, atol=1e-5, rtol=0)
