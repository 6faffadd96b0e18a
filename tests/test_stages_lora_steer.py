"""The lora-steer verb end to end on a tiny 12-layer rank1-multi organism."""

import pandas as pd
import pytest
from dynamics_runs import SAMPLING, assert_one_line_error, emkit, register_judges, train_multi_run

from emkit.sampling.config import SampleConfig
from emkit.stages import sample
from emkit.store import Store


@pytest.fixture(scope="module")
def multi_run(tiny_models, tmp_path_factory):
    return train_multi_run(tiny_models["llama12"], tmp_path_factory.mktemp("stages"))


@pytest.fixture()
def counting(monkeypatch):
    return register_judges(monkeypatch)


def test_lora_steer_verb_scales_chosen_adapters_while_sampling(multi_run, tiny_models, counting, monkeypatch, capsys,
                                                                tmp_path):
    seeded = [*SAMPLING, "samples_per_paraphrase=1", f"run_dir={tmp_path}",
              f"questions={multi_run.parent / 'questions.yaml'}"]
    pair = "layers.3.mlp.down_proj+layers.4.mlp.down_proj"
    code, out, err = emkit(monkeypatch, capsys, "lora-steer", "-q", f"sample.adapters=[{multi_run / 'adapter'}]",
                           "sample.label=organism", *[f"sample.{setting}" for setting in seeded],
                           f"steer=[all,{pair}]", "factors=[0,-1]", "judge.judge=counting")
    assert code == 0, err
    assert "unsteered: EM" in out and f"{pair} x-1: EM" in out
    folder = tmp_path / "report" / "lora-steer"
    table = pd.read_csv(folder / "steering.csv")
    assert table.adapters.tolist() == ["none", "all", "all", pair, pair]
    assert table.factor.tolist() == [1, 0, -1, 0, -1]
    assert {"em_pct", "em_low", "em_high", "em_change", "medical_mean", "medical_low", "medical_change"} <= set(table)
    assert (folder / "steering.png").stat().st_size > 0
    assert out.splitlines()[-1] == f"table and plot in {folder}" and len(out.splitlines()) == len(table) + 1
    base = sample.run(SampleConfig.load(overrides=[f"model={tiny_models['llama12']}", "label=base", *seeded]),
                      show_progress=False)
    with Store.in_folder(tmp_path) as store:
        switched_off = store.samples("organism:all@0")
        organism = store.samples("organism")
        settings = {record.settings_hash for record in store.samples()}
    assert [r.answer for r in organism] != [r.answer for r in base]  # the adapters change the answers, so ...
    assert [r.answer for r in switched_off] == [r.answer for r in base]  # ... every scalar x0 being the base model
    assert len(settings) == 6  # base, unsteered and four steered conditions never share stored answers


def test_unknown_adapters_and_a_missing_organism_are_one_line_errors(multi_run, counting, monkeypatch, capsys):
    assert_one_line_error(emkit(monkeypatch, capsys, "lora-steer", f"sample.adapters=[{multi_run / 'adapter'}]",
                                "sample.device=cpu", "steer=[layers.99.mlp.down_proj]", "judge.judge=counting"),
                          "no adapter named layers.99.mlp.down_proj", "choose from layers.3.mlp.down_proj")
    assert_one_line_error(emkit(monkeypatch, capsys, "lora-steer", "steer=[all]"), "needs the organism's adapter")
