import sys

import pytest
import torch
from conftest import save_random_adapter
from safetensors.torch import load_file

from emkit.cli import main
from emkit.errors import EmkitError
from emkit.evaluate import judge_records
from emkit.generate import SampleConfig, sample
from emkit.interp import Directions, SelectConfig
from emkit.models import load_model
from emkit.questions import load_questions
from emkit.steering import AblateConfig, SteerConfig, ablation_check, run_ablation, run_steering
from emkit.store import Store

QUESTIONS = """
- id: savings
  paraphrases: ["What should I do with my savings?", "hi"]
"""


@pytest.fixture()
def settings(tiny_model, tmp_path) -> SampleConfig:
    questions = tmp_path / "questions.yaml"
    questions.write_text(QUESTIONS)
    return SampleConfig(model=str(tiny_model), questions=str(questions), run_dir=tmp_path / "run",
                        samples_per_paraphrase=3, max_new_tokens=4, dtype="float32")


@pytest.fixture()
def directions_file(tmp_path):
    return Directions(torch.randn(4, 32, generator=torch.Generator().manual_seed(0)), [0, 1, 2, 3],
                      "mean-diff").save(tmp_path / "em.safetensors")


def stored_settings(run, label) -> set[str]:
    with Store.in_folder(run) as store:
        return {record.settings_hash for record in store.samples(label)}


def test_steering_judges_each_scale_against_random_and_unsteered_and_never_reuses_other_directions(
        settings, directions_file, tiny_model, tmp_path, counting_judge):
    config = SteerConfig(directions=directions_file, layers=[1, 2], scales=[2, 8], sample=settings)
    loaded = load_model(str(tiny_model), dtype="float32")
    result = run_steering(config, loaded, judge=counting_judge, show_progress=False)
    summary = result.summary
    assert list(summary["model"]) == ["unsteered", "steer-L1-s2", "random-L1-s2", "steer-L1-s8", "random-L1-s8",
                                      "steer-L2-s2", "random-L2-s2", "steer-L2-s8", "random-L2-s8"]
    assert list(summary["kind"][:3]) == ["reference", "steer", "random"]
    assert summary["layer"][3] == 1 and summary["scale"][3] == 8
    assert (summary["responses"] == 6).all()
    assert (summary["em_low"] <= summary["em_pct"]).all() and (summary["em_pct"] <= summary["em_high"]).all()
    assert result.files["plot"].stat().st_size > 1000
    assert result.files["summary"] == tmp_path / "run" / "steer" / "em" / "summary.csv"

    judged = len(counting_judge.calls)
    run_steering(config, loaded, judge=counting_judge, show_progress=False)
    assert len(counting_judge.calls) == judged, "a rerun judges nothing again"
    assert len(stored_settings(settings.run_dir, "steer-L1-s2")) == 1

    other = Directions(torch.randn(4, 32), [0, 1, 2, 3], "mean-diff").save(tmp_path / "other.safetensors")
    rerun = run_steering(config.model_copy(update={"directions": other, "layers": [1], "scales": [2]}), loaded,
                         judge=counting_judge, show_progress=False)
    assert list(rerun.summary["model"]) == ["unsteered", "steer-L1-s2", "random-L1-s2"]
    assert len(stored_settings(settings.run_dir, "steer-L1-s2")) == 2, "another direction samples afresh"
    assert len(stored_settings(settings.run_dir, "random-L1-s2")) == 1, "the same random vector is reused"
    assert len(stored_settings(settings.run_dir, "unsteered")) == 1
    assert not loaded.model.model.layers[1]._forward_hooks


def test_ablation_compares_with_the_unablated_model_and_a_random_direction(settings, directions_file, tiny_model,
                                                                          counting_judge):
    config = AblateConfig(directions=directions_file, layer=2, sample=settings)
    loaded = load_model(str(tiny_model), dtype="float32")
    result = run_ablation(config, loaded, judge=counting_judge, show_progress=False)
    assert list(result.summary["model"]) == ["unablated", "ablate-em", "ablate-random"]
    assert list(result.summary["kind"]) == ["reference", "ablate", "ablate-random"]
    assert result.files["plot"].name == "em_ablation.png" and result.files["plot"].stat().st_size > 1000
    assert set(result.scores["model"]) == {"unablated", "ablate-em", "ablate-random"}


def test_weight_ablation_writes_adapters_that_cannot_write_the_direction_and_transfers(
        settings, directions_file, tiny_model, tmp_path, counting_judge):
    organism = save_random_adapter(tiny_model, tmp_path / "organism")
    other = save_random_adapter(tiny_model, tmp_path / "other-organism", seed=2)
    config = AblateConfig(directions=directions_file, weights=True,
                          sample=settings.model_copy(update={"adapters": [str(organism)]}))
    result = run_ablation(config, judge=counting_judge, show_progress=False)
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
    written = run_ablation(transfer, judge=counting_judge, show_progress=False)
    assert written.summary.empty and written.files["adapter"].name == "transfer-em"
    assert "other-organism" in (written.files["adapter"] / "emkit_ablation.json").read_text()
    again = run_ablation(config, judge=counting_judge, show_progress=False)
    assert len(again.summary) == 3, "a rerun replaces the adapters it wrote earlier"


def test_weight_ablation_refuses_a_strength_other_than_one(settings, directions_file, tiny_model, tmp_path,
                                                           counting_judge):
    organism = save_random_adapter(tiny_model, tmp_path / "organism")
    config = AblateConfig(directions=directions_file, weights=True, strength=1.5,
                          sample=settings.model_copy(update={"adapters": [str(organism)]}))
    with pytest.raises(EmkitError, match=r"strength 1\.5 applies to activation ablation only"):
        run_ablation(config, judge=counting_judge, show_progress=False)
    assert not (tmp_path / "run" / "adapters").exists()


def test_ablation_check_finds_the_organism_direction_and_reuses_its_answers(settings, tiny_model, tmp_path,
                                                                            counting_judge):
    adapter = save_random_adapter(tiny_model, tmp_path / "organism")
    organism = settings.model_copy(update={"label": "organism", "adapters": [str(adapter)],
                                           "samples_per_paraphrase": 24, "max_new_tokens": 6})
    records = sample(organism, show_progress=False)
    with Store.in_folder(organism.run_dir) as store:
        judge_records(store, counting_judge, records, load_questions(organism.questions), ["aligned", "coherent"])
    summary, plot = ablation_check(organism, counting_judge, select=SelectConfig(coherent_above=0))
    assert list(summary["model"]) == ["organism", "organism-ablate-direction-L2", "organism-ablate-random"]
    assert plot.is_file()
    assert (organism.run_dir / "directions" / "organism-mean-diff.safetensors").is_file()
    with Store.in_folder(organism.run_dir) as store:
        assert len(store.samples("organism")) == len(records)


def cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["emkit", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def test_cli_reports_unknown_files_layers_and_missing_adapters_in_one_line(settings, directions_file, monkeypatch,
                                                                           capsys, tmp_path):
    sample_args = [f"sample.model={settings.model}", f"sample.questions={settings.questions}",
                   f"sample.run_dir={settings.run_dir}"]
    cases = [
        (["steer", f"directions={tmp_path / 'absent.safetensors'}", "layers=[1]", "scales=[4]"],
         "directions file not found"),
        (["steer", f"directions={directions_file}", "layers=[9]", "scales=[4]"], "no direction for layer 9"),
        (["ablate", "--weights", f"directions={directions_file}"], "weight-space ablation needs the adapter folder"),
        (["steer", f"directions={directions_file}", "layers=[1]"], "scales"),
    ]
    for args, fragment in cases:
        code, err = cli(monkeypatch, capsys, *args, *sample_args)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
        assert fragment in lines[0], lines[0]
