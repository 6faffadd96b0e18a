"""The lora-probe verb end to end on a tiny 12-layer rank1-multi organism."""

import pandas as pd
import pytest
from conftest import CountingJudge
from dynamics_runs import SAMPLING, assert_one_line_error, emkit, register_judges, train_multi_run

from emkit.errors import EmkitError
from emkit.records import SampleRecord
from emkit.sampling.config import SampleConfig
from emkit.stages import lora_probe, sample
from emkit.stages.lora_probe import LoraProbeConfig
from emkit.store import Store
from emkit.train.presets import preset_layers


@pytest.fixture(scope="module")
def multi_run(tiny_models, tmp_path_factory):
    return train_multi_run(tiny_models["llama12"], tmp_path_factory.mktemp("stages"))


@pytest.fixture()
def counting(monkeypatch):
    return register_judges(monkeypatch)


def test_lora_probe_verb_writes_scalars_probe_table_and_violins(multi_run, tiny_models, counting, monkeypatch,
                                                                  capsys, tmp_path):
    config = SampleConfig.load(overrides=[f"model={tiny_models['llama12']}", f"adapters=[{multi_run / 'adapter'}]",
                                          f"questions={multi_run.parent / 'questions.yaml'}", f"run_dir={tmp_path}",
                                          "label=organism", *SAMPLING, "samples_per_paraphrase=20",
                                          "max_new_tokens=8"])
    answers = sample.run(config, show_progress=False)
    code, out, err = emkit(monkeypatch, capsys, "lora-probe", "-q", f"run_dir={tmp_path}",
                           f"adapter={multi_run}", "labels=[organism]", "judge.judge=hashing", "repeats=4",
                           "dtype=float32", "device=cpu")
    assert code == 0, err
    assert "misaligned_vs_aligned: AUC" in out
    folder = tmp_path / "report" / "lora-probe"
    adapters = [f"layers.{layer}.mlp.down_proj" for layer in preset_layers("rank1-multi", 12)]
    scalars = pd.read_parquet(folder / "scalars.parquet")
    assert list(scalars.columns) == ["response_id", "token_index", "position", "token", *adapters]
    distinct = len({(answer.question, answer.answer) for answer in answers})  # an answer given twice counts once
    assert len(answers) == 120 and set(scalars.response_id) <= set(range(distinct))  # empty answers have no tokens
    assert scalars.response_id.nunique() > 100 and scalars.token.map(type).eq(str).all()
    summary = pd.read_csv(folder / "summary.csv").set_index("task")
    assert summary.loc["misaligned_vs_aligned", "status"] == "ok"
    assert summary.loc["misaligned_vs_aligned", ["accuracy_mean", "auc_std", "f1_mean"]].notna().all()
    assert summary.loc["medical_in_misaligned", "status"].startswith("skipped: too few examples")
    assert (folder / "violin_misaligned_vs_aligned.png").stat().st_size > 0
    coefficients = pd.read_csv(folder / "coefficients.csv")
    assert set(coefficients.adapter) == set(adapters) and set(coefficients.task) <= set(summary.index)
    responses = pd.read_csv(folder / "responses.csv")
    assert len(responses) == distinct and {"aligned", "coherent", "medical", f"mean:{adapters[0]}"} <= set(responses)
    lines = out.splitlines()
    assert lines[-1] == f"tables and plots in {folder}"
    assert f"medical_in_misaligned: {summary.loc['medical_in_misaligned', 'status']}" in lines


def test_bad_runs_and_adapters_are_one_line_errors(multi_run, monkeypatch, capsys, tmp_path):
    assert_one_line_error(emkit(monkeypatch, capsys, "lora-probe", f"run_dir={tmp_path}", f"adapter={multi_run}"),
                          "no results store")
    assert_one_line_error(emkit(monkeypatch, capsys, "lora-probe", f"run_dir={multi_run}", f"adapter={tmp_path}"),
                          "holds no peft adapter")


class AlignmentOnlyJudge(CountingJudge):
    """Scores aligned and coherent only, like the offline judge."""

    def check_metric(self, metric):
        if metric not in ("aligned", "coherent"):
            raise EmkitError(f"cannot score '{metric}'")


def test_domain_metric_the_judge_cannot_score_names_the_domain_judge_fix(multi_run, tmp_path):
    with Store.in_folder(tmp_path) as store:  # one answer is enough: judges are checked before any work
        store.add_samples([SampleRecord("organism", "settings", "q", 0, 0, "Doctor?", None, "Rest.", "stop", 2)])
    config = LoraProbeConfig(run_dir=tmp_path, adapter=str(multi_run), judge={"judge": "counting"})
    with pytest.raises(EmkitError, match=r"cannot score 'medical'.*domain_judge\.judge=local"):
        lora_probe.run(config, show_progress=False, judge=AlignmentOnlyJudge())
