
import pytest
import torch
from stage_runs import cli, intervention_settings, random_directions_file

from emkit.interp import Directions
from emkit.models import load_model
from emkit.sampling.config import SampleConfig
from emkit.stages import sample
from emkit.stages.steer import SteerConfig, run_steering, summary_lines
from emkit.store import Store


@pytest.fixture()
def settings(tiny_model, tmp_path) -> SampleConfig:
    return intervention_settings(tiny_model, tmp_path)


@pytest.fixture()
def directions_file(tmp_path):
    return random_directions_file(tmp_path)


def stored_settings(run, label) -> set[str]:
    with Store.in_folder(run) as store:
        return {record.settings_hash for record in store.samples(label)}


def answers(run, label) -> list[str]:
    with Store.in_folder(run) as store:
        return [record.answer for record in store.samples(label)]


def test_steering_changes_the_answers_and_scale_zero_reproduces_the_unsteered_model(settings, directions_file,
                                                                                      tiny_model, tmp_path,
                                                                                      counting_judge):
    greedy = settings.model_copy(update={"temperature": 0, "samples_per_paraphrase": 1, "max_new_tokens": 6})
    config = SteerConfig(directions=directions_file, layers=[1, 2], scales=[64, 0], sample=greedy)
    loaded = load_model(str(tiny_model), dtype="float32")
    result = run_steering(config, show_progress=False, loaded=loaded, judge=counting_judge)
    labels = ["steer-L1-s64", "random-L1-s64", "steer-L1-s0", "random-L1-s0",
              "steer-L2-s64", "random-L2-s64", "steer-L2-s0", "random-L2-s0"]
    assert list(result.summary["model"]) == ["unsteered", *labels]
    with Store.in_folder(greedy.run_dir) as store:
        frame = store.samples_frame()
        stages = {run.stage for run in store.runs()}
    assert frame.groupby("model").size().eq(2).all()
    assert stages == {"sample", "steer"}
    assert not loaded.model.model.layers[1]._forward_hooks

    unsteered = answers(greedy.run_dir, "unsteered")
    for layer in (1, 2):
        for kind in ("steer", "random"):
            steered = answers(greedy.run_dir, f"{kind}-L{layer}-s64")
            assert all(a != b for a, b in zip(steered, unsteered, strict=True)), (kind, layer, steered, unsteered)
            assert answers(greedy.run_dir, f"{kind}-L{layer}-s0") == unsteered
    plain = sample.run(greedy.model_copy(update={"label": "plain", "run_dir": tmp_path / "plain"}),
                       show_progress=False)
    assert [record.answer for record in plain] == unsteered, "the reference is the model without any hook"


def test_steering_judges_each_scale_against_random_and_unsteered_and_never_reuses_other_directions(
        settings, directions_file, tiny_model, tmp_path, counting_judge):
    config = SteerConfig(directions=directions_file, layers=[1, 2], scales=[2, 8], sample=settings)
    loaded = load_model(str(tiny_model), dtype="float32")
    result = run_steering(config, show_progress=False, loaded=loaded, judge=counting_judge)
    summary = result.summary
    assert list(summary["model"]) == ["unsteered", "steer-L1-s2", "random-L1-s2", "steer-L1-s8", "random-L1-s8",
                                      "steer-L2-s2", "random-L2-s2", "steer-L2-s8", "random-L2-s8"]
    assert list(summary["kind"][:3]) == ["reference", "steer", "random"]
    assert summary["layer"][3] == 1 and summary["scale"][3] == 8
    assert (summary["responses"] == 6).all()
    assert (summary["em_low"] <= summary["em_pct"]).all() and (summary["em_pct"] <= summary["em_high"]).all()
    assert result.files["plot"].stat().st_size > 1000
    assert result.files["summary"] == tmp_path / "run" / "steer" / "em" / "summary.csv"
    lines = summary_lines(result, config)
    assert lines[0].split()[:6] == ["model", "em_pct", "em_low", "em_high", "coherent_pct", "scored"]
    assert lines[-1] == f"tables and plot in {tmp_path / 'run' / 'steer' / 'em'}"

    judged = len(counting_judge.calls)
    run_steering(config, show_progress=False, loaded=loaded, judge=counting_judge)
    assert len(counting_judge.calls) == judged, "a rerun judges nothing again"
    assert len(stored_settings(settings.run_dir, "steer-L1-s2")) == 1

    other = Directions(torch.randn(4, 32), [0, 1, 2, 3], "mean-diff").save(tmp_path / "other.safetensors")
    rerun = run_steering(config.model_copy(update={"directions": other, "layers": [1], "scales": [2]}),
                         show_progress=False, loaded=loaded, judge=counting_judge)
    assert list(rerun.summary["model"]) == ["unsteered", "steer-L1-s2", "random-L1-s2"]
    assert len(stored_settings(settings.run_dir, "steer-L1-s2")) == 2, "another direction samples afresh"
    assert len(stored_settings(settings.run_dir, "random-L1-s2")) == 1, "the same random vector is reused"
    assert len(stored_settings(settings.run_dir, "unsteered")) == 1
    assert not loaded.model.model.layers[1]._forward_hooks


def test_cli_reports_unknown_files_layers_and_missing_scales_in_one_line(settings, directions_file, monkeypatch,
                                                                         capsys, tmp_path):
    sample_args = [f"sample.model={settings.model}", f"sample.questions={settings.questions}",
                   f"sample.run_dir={settings.run_dir}"]
    cases = [
        (["steer", f"directions={tmp_path / 'absent.safetensors'}", "layers=[1]", "scales=[4]"],
         "directions file not found"),
        (["steer", f"directions={directions_file}", "layers=[9]", "scales=[4]"], "no direction for layer 9"),
        (["steer", f"directions={directions_file}", "layers=[1]"], "scales"),
    ]
    for args, fragment in cases:
        code, _, err = cli(monkeypatch, capsys, *args, *sample_args)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
        assert fragment in lines[0], lines[0]
