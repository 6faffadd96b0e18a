"""The phase stage: which branch its summary takes, and with which figures, on runs whose answer is known; what
it writes; and the verb end to end on a tiny trained rank1-multi organism."""

import json
import math

import pandas as pd
import pytest
import torch
from dynamics_runs import (
    PLANTED,
    SAMPLING,
    assert_one_line_error,
    emkit,
    planted_run,
    register_judges,
    train_multi_run,
    write_moves,
)

from emkit.stages import phase
from emkit.stages.phase import PhaseConfig, PhaseResult
from emkit.store import Store

SHARP_TURN = torch.cat([torch.tensor([[1.0, 0.0]]).repeat(15, 1), torch.tensor([[0.0, 1.0]]).repeat(15, 1)])
"""15 unit moves along x, then 15 along y: one right-angle turn at checkpoint 15 (step 75)."""
SWAY = torch.tensor([[math.cos(0.5 * math.sin(i / 3)), math.sin(0.5 * math.sin(i / 3))] for i in range(30)])
"""30 unit moves whose heading sways smoothly within +-0.5 rad: it bends, but never turns sharply."""


@pytest.fixture(scope="module")
def multi_run(tiny_models, tmp_path_factory):
    return train_multi_run(tiny_models["llama12"], tmp_path_factory.mktemp("stages"))


@pytest.fixture()
def counting(monkeypatch):
    return register_judges(monkeypatch)


def analysed(run, **settings) -> tuple[PhaseResult, PhaseConfig]:
    config = PhaseConfig(run=str(run), ks=[1, 2], **settings)
    return phase.run(config, show_progress=False), config


def test_a_sharp_turn_is_claimed_with_its_evidence(tmp_path):
    result, config = analysed(write_moves(tmp_path / "run", SHARP_TURN))
    # k=1: 29 valid steps, all +1 but the corner's 0, so the dip is sqrt(29) = 5.4 sd; no shuffle dips that deep
    assert phase.summary_lines(result, config) == [
        "transition at step 75 (k=1): local cosine 0.00 (smoothed 0.00) against a run median of 1.00, a dip of 1.00 "
        "(5.4 sd); net movement before vs after it at 90 degrees",
        "  it clears the shuffled-order null (95% of 200 shuffled runs dip <= 3.3 sd; this dip 5.4 sd, +2.1 sd from "
        "it, p = 0.005)",
        "  k=1: dip at step 75, 0.00 vs median 1.00 (5.4 sd)",
        "  k=2: dip at step 75, 0.00 vs median 1.00 (4.9 sd)",
        "  similarity to the final vector: 0.71 at the transition",  # (15, 0) against (15, 15)
        f"tables and plots in {tmp_path / 'run' / 'report' / 'phase'}",
    ]


def test_a_smooth_sway_is_not_claimed(tmp_path):
    result, config = analysed(write_moves(tmp_path / "run", SWAY))
    assert result.report.candidate is not None and result.report.transition is None
    assert phase.summary_lines(result, config) == [
        "no transition claimed in 31 checkpoints: the deepest dip, at step 50 (k=2), does not clear the "
        "shuffled-order null (95% of 200 shuffled runs dip <= 4.2 sd; this dip 1.5 sd, -2.6 sd from it, p = 1.000)",
        "  k=1: dip at step 50, 0.99 vs median 0.99 (1.4 sd)",
        "  k=2: dip at step 50, 0.95 vs median 0.98 (1.5 sd)",
        f"tables and plots in {tmp_path / 'run' / 'report' / 'phase'}",
    ]


def test_a_straight_run_has_no_dip_at_all(tmp_path):
    result, config = analysed(write_moves(tmp_path / "run", torch.tensor([[1.0, 0.0]]).repeat(10, 1)))
    assert result.report.candidate is None
    assert phase.summary_lines(result, config) == [
        "no transition detected in 11 checkpoints (ks 1, 2: flat or too few valid steps)",
        "  k=1: no dip (no valid steps or flat curve)",
        "  k=2: no dip (no valid steps or flat curve)",
        f"tables and plots in {tmp_path / 'run' / 'report' / 'phase'}",
    ]


def test_em_lines_compare_the_last_step_before_the_transition_with_the_end(tmp_path):
    result, config = analysed(write_moves(tmp_path / "run", SHARP_TURN))
    sampled = pd.DataFrame({"step": [0, 50, 100, 150], "responses": [24, 24, 24, 24],
                            "em_pct": [0.0, 2.5, 30.0, 41.7], "em_low": [0.0, 0.0, 12.5, 20.8],
                            "em_high": [0.0, 8.3, 50.0, 62.5]})
    steps = result.steps.merge(sampled, on="step", how="left")
    scaling = pd.DataFrame({"factor": [0.0, 2.0], "em_pct": [0.0, math.nan]})
    lines = phase.summary_lines(PhaseResult(result.report, steps, scaling, result.folder), config)
    assert lines[5:] == [
        "  EM % by step: 0: 0.0, 50: 2.5, 100: 30.0, 150: 41.7",
        "  EM before the transition (step 50): 2.5% [0.0, 8.3]; at the end (step 150): 41.7% [20.8, 62.5]",
        "  EM % by B scale: x0: 0.0, x2: n/a",
        f"tables and plots in {result.folder}",
    ]


def test_phase_json_is_written_once_with_the_report_its_figures_and_behaviour(tmp_path):
    run, turn_step = planted_run(tmp_path / "run")
    result, _ = analysed(run, modules=[PLANTED], smooth=3)
    folder = run / "report" / "phase"
    assert result.folder == folder and result.report.modules == [PLANTED]
    assert result.report.transition is not None and abs(result.report.transition.step - turn_step) <= 5
    summary = json.loads((folder / "phase.json").read_text())
    figures = ["norms", "pca", "local_cosine", "similarity_to_final"]
    report = json.loads(json.dumps(result.report.to_dict()))
    assert summary == {**report, "plots": {name: f"{name}.png" for name in figures},
                       "behaviour": {"by_step": None, "by_factor": None, "judge": None}}
    assert list(summary)[-2:] == ["plots", "behaviour"] and summary["local_cosine"]["1"][0] is None
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        [f"{name}.png" for name in figures] + ["phase.json", "summary.csv"])
    steps = pd.read_csv(folder / "summary.csv")
    assert steps.columns.tolist() == ["step", "norm", "local_cosine_k1", "local_cosine_k2", "similarity_to_final",
                                      "pc1", "pc2"]
    assert steps.step.tolist() == list(range(0, 150, 5))


def test_phase_verb_reports_transition_and_em_per_checkpoint_and_scale(multi_run, counting, monkeypatch, capsys):
    questions = multi_run.parent / "questions.yaml"
    code, out, err = emkit(monkeypatch, capsys, "phase", "-q", f"run={multi_run}", "ks=[1,2]", "behaviour.every=2",
                           "behaviour.factors=[0,1,2]", f"behaviour.sample.questions={questions}",
                           *[f"behaviour.sample.{setting}" for setting in SAMPLING], "behaviour.judge.judge=counting")
    assert code == 0, err
    # five checkpoints: whatever dip there is, shuffles of four moves make one as deep
    assert "no transition claimed in 5 checkpoints: the deepest dip, at step" in out, out
    assert "does not clear the shuffled-order null" in out, out
    assert "EM % by step: 0: " in out and "EM % by B scale: x0: " in out
    folder = multi_run / "report" / "phase"
    for name in ("norms", "pca", "local_cosine", "similarity_to_final", "mechanism_vs_behaviour", "scaling"):
        assert (folder / f"{name}.png").stat().st_size > 0
    steps = pd.read_csv(folder / "summary.csv")
    assert steps.step.tolist() == [0, 1, 2, 3, 4]
    assert steps.em_pct.notna().tolist() == [True, False, True, False, True]  # every 2nd checkpoint, and the last
    assert (steps.responses.dropna() == 24).all()
    assert pd.read_csv(folder / "scaling.csv").factor.tolist() == [0, 1, 2]
    summary = json.loads((folder / "phase.json").read_text())
    assert [row["step"] for row in summary["behaviour"]["by_step"]] == [0, 2, 4]
    assert summary["plots"]["scaling"] == "scaling.png"
    with Store.in_folder(multi_run) as store:  # answers went to the run's own store, one label per condition
        labels = {record.model for record in store.samples()}
    assert labels == {"ckpt-0", "ckpt-2", "ckpt-4", "scale-0", "scale-1", "scale-2"}


def test_bad_runs_are_one_line_errors(multi_run, monkeypatch, capsys, tmp_path):
    assert_one_line_error(emkit(monkeypatch, capsys, "phase", f"run={tmp_path / 'absent'}"), "absent", "not found")
    assert_one_line_error(emkit(monkeypatch, capsys, "phase", f"run={tmp_path}"), "no adapter checkpoints")
    assert_one_line_error(emkit(monkeypatch, capsys, "phase", f"run={multi_run}", "behaviour.every=1",
                                f"behaviour.sample.adapters=[{multi_run / 'adapter'}]"), "must stay empty")
