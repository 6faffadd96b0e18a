import contextlib
import sys

import pytest
import torch
from conftest import save_random_adapter
from safetensors.torch import load_file
from stage_runs import intervention_settings, random_directions_file

from emkit.cli import main
from emkit.errors import EmkitError
from emkit.interp import Directions, SelectConfig, decoder_layers
from emkit.models import load_model
from emkit.questions import load_questions
from emkit.sampling.config import SampleConfig
from emkit.stages import sample
from emkit.stages.ablate import AblateConfig, ablation_check, ablation_conditions, run_ablation, summary_lines
from emkit.stages.evaluate import judge_records
from emkit.store import Store


@pytest.fixture()
def settings(tiny_model, tmp_path) -> SampleConfig:
    return intervention_settings(tiny_model, tmp_path)


@pytest.fixture()
def directions_file(tmp_path):
    return random_directions_file(tmp_path)


def test_ablation_compares_with_the_unablated_model_and_a_random_direction(settings, directions_file, tiny_model,
                                                                          counting_judge):
    config = AblateConfig(directions=directions_file, layer=2, sample=settings)
    loaded = load_model(str(tiny_model), dtype="float32")
    result = run_ablation(config, show_progress=False, loaded=loaded, judge=counting_judge)
    assert list(result.summary["model"]) == ["unablated", "ablate-em", "ablate-random"]
    assert list(result.summary["kind"]) == ["reference", "ablate", "ablate-random"]
    assert result.files["plot"].name == "em_ablation.png" and result.files["plot"].stat().st_size > 1000
    assert set(result.scores["model"]) == {"unablated", "ablate-em", "ablate-random"}
    assert summary_lines(result, config)[-1] == f"tables and plot in {settings.run_dir / 'ablate' / 'em'}"
    with Store.in_folder(settings.run_dir) as store:
        assert {run.stage for run in store.runs()} == {"sample", "ablate"}
    assert not loaded.model.model.layers[2]._forward_hooks


def test_ablation_labels_the_direction_and_the_random_baseline(settings, tiny_model, counting_judge):
    directions = Directions(torch.randn(4, 32), [0, 1, 2, 3], "probe")
    sample_settings = settings.model_copy(update={"label": "ignored", "samples_per_paraphrase": 1})
    single = AblateConfig(layer=2, name="em", label_prefix="organism-", reference=None, sample=sample_settings)
    per_layer = AblateConfig(ablate_layers=[1, 3], random_baseline=False, reference=None, sample=sample_settings)
    loaded = load_model(str(tiny_model), dtype="float32")
    for config, labels in ((single, ["organism-ablate-em", "organism-ablate-random"]), (per_layer, ["ablate-probe"])):
        result = run_ablation(config, show_progress=False, loaded=loaded, directions=directions, judge=counting_judge)
        assert list(result.summary["model"]) == labels
    with Store.in_folder(settings.run_dir) as store:
        assert store.sample_labels() == ["ablate-probe", "organism-ablate-em", "organism-ablate-random"]


def test_ablation_strength_reaches_the_hooks_and_the_sampled_settings(settings, tiny_model):
    """strength flows into both conditions' hooks and intervention; the default leaves the intervention as before."""
    directions = Directions(torch.randn(4, 32), [0, 1, 2, 3], "mean-diff")
    plain = ablation_conditions(AblateConfig(layer=2, ablate_layers=[1], sample=settings), directions)
    reversing = ablation_conditions(AblateConfig(layer=2, ablate_layers=[1], strength=1.5, sample=settings),
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


def test_weight_ablation_writes_adapters_that_cannot_write_the_direction_and_transfers(
        settings, directions_file, tiny_model, tmp_path, counting_judge):
    organism = save_random_adapter(tiny_model, tmp_path / "organism")
    other = save_random_adapter(tiny_model, tmp_path / "other-organism", seed=2)
    config = AblateConfig(directions=directions_file, weights=True,
                          sample=settings.model_copy(update={"adapters": [str(organism)]}))
    result = run_ablation(config, show_progress=False, judge=counting_judge)
    assert list(result.summary["model"]) == ["unablated", "weights-em", "weights-random"]
    directions = Directions.load(directions_file)
    for key, weight in load_file(str(result.files["adapter"] / "adapter_model.safetensors")).items():
        if key.endswith("lora_B.weight"):
            layer = 1 if ".layers.1." in key else 2
            unit = directions.at(layer) / directions.at(layer).norm()
            assert (unit @ weight).abs().max() < 1e-5
    assert result.files["random_adapter"].name == "em-random"

    transfer = config.model_copy(update={"adapter": other, "label_prefix": "transfer-", "evaluate": False,
                                         "sample": settings})
    written = run_ablation(transfer, show_progress=False, judge=counting_judge)
    assert written.summary.empty and written.files["adapter"].name == "transfer-em"
    assert "other-organism" in (written.files["adapter"] / "emkit_ablation.json").read_text()
    assert summary_lines(written, transfer) == [f"adapter: {written.files['adapter']}",
                                                f"random adapter: {written.files['random_adapter']}"]
    again = run_ablation(config, show_progress=False, judge=counting_judge)
    assert len(again.summary) == 3, "a rerun replaces the adapters it wrote earlier"


def test_weight_ablation_refuses_a_strength_other_than_one(settings, directions_file, tiny_model, tmp_path,
                                                           counting_judge):
    organism = save_random_adapter(tiny_model, tmp_path / "organism")
    config = AblateConfig(directions=directions_file, weights=True, strength=1.5,
                          sample=settings.model_copy(update={"adapters": [str(organism)]}))
    with pytest.raises(EmkitError, match=r"strength 1\.5 applies to activation ablation only"):
        run_ablation(config, show_progress=False, judge=counting_judge)
    assert not (tmp_path / "run" / "adapters").exists()


def test_ablation_check_finds_the_organism_direction_and_reuses_its_answers(settings, tiny_model, tmp_path,
                                                                            counting_judge):
    adapter = save_random_adapter(tiny_model, tmp_path / "organism")
    organism = settings.model_copy(update={"label": "organism", "adapters": [str(adapter)],
                                           "samples_per_paraphrase": 24, "max_new_tokens": 6})
    records = sample.run(organism, show_progress=False)
    with Store.in_folder(organism.run_dir) as store:
        judge_records(store, counting_judge, records, load_questions(organism.questions), ["aligned", "coherent"])
    summary, plot = ablation_check(organism, counting_judge, select=SelectConfig(coherent_above=0))
    assert list(summary["model"]) == ["organism", "organism-ablate-direction-L2", "organism-ablate-random"]
    assert plot.is_file()
    assert (organism.run_dir / "directions" / "organism-mean-diff.safetensors").is_file()
    with Store.in_folder(organism.run_dir) as store:
        assert len(store.samples("organism")) == len(records)


def test_cli_reports_a_missing_adapter_in_one_line(settings, directions_file, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["emkit", "ablate", "--weights", f"directions={directions_file}",
                                      f"sample.model={settings.model}", f"sample.questions={settings.questions}",
                                      f"sample.run_dir={settings.run_dir}"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_info.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "weight-space ablation needs the adapter folder" in lines[0]
