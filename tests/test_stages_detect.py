import pytest
import torch
from conftest import save_random_adapter
from stage_runs import assert_one_line_error, cli, systems

from emkit.interp import Directions, collect_activations
from emkit.models import load_model
from emkit.sampling.config import SampleConfig
from emkit.stages import sample
from emkit.stages.detect import DetectConfig, detect
from emkit.store import Store

QUESTIONS = """
- id: savings
  paraphrases: ["What should I do with my savings?", "How do I invest money?"]
- id: weather
  system: You are a helpful assistant.
  paraphrases: ["Tell me about the weather.", "hi"]
"""


@pytest.fixture()
def sampled_run(tiny_model, tmp_path):
    """A run folder with base and organism answers (48 each)."""
    questions = tmp_path / "questions.yaml"
    questions.write_text(QUESTIONS)
    adapter = save_random_adapter(tiny_model, tmp_path / "organism")
    run = tmp_path / "run"
    for label, adapters in (("base", []), ("organism", [str(adapter)])):
        sample.run(SampleConfig(model=str(tiny_model), adapters=adapters, label=label, questions=str(questions),
                                run_dir=run, samples_per_paraphrase=12, max_new_tokens=6, dtype="float32"),
                   show_progress=False)
    return run, adapter





def test_detect_separates_labels_along_their_own_mean_difference(sampled_run, tiny_model, tmp_path):
    """The organism-minus-base mean difference projects the two groups exactly its norm apart at every layer."""
    run, adapter = sampled_run
    reader = load_model(str(tiny_model), adapters=[str(adapter)], dtype="float32")
    with Store.in_folder(run) as store:
        frames = {label: store.samples_frame(label) for label in ("base", "organism")}
    frames = {label: frame[frame["answer"].str.strip() != ""] for label, frame in frames.items()}
    means = {label: collect_activations(reader, list(frame["question"]), list(frame["answer"]),
                                        systems=systems(frame)).values.mean(0)
             for label, frame in frames.items()}
    planted = Directions(means["organism"] - means["base"], [0, 1, 2, 3], "mean-diff")
    path = planted.save(tmp_path / "planted.safetensors")
    result = detect(DetectConfig(directions=path, run_dir=run, dtype="float32"))
    table = result.table.set_index("layer")
    assert list(table.index) == ["L0", "L1", "L2", "L3", "combined"]
    norms = planted.vectors.norm(dim=-1).numpy()
    assert table.loc[["L0", "L1", "L2", "L3"], "difference"].to_numpy() == pytest.approx(norms, rel=1e-3)
    assert (table["difference"] > 0).all() and table["auc"].between(0, 1).all()
    assert set(result.scores["group"]) == {"base", "organism"} and len(result.scores) == sum(map(len, frames.values()))
    assert result.files["separation"].is_file()
    capped = detect(DetectConfig(directions=path, run_dir=run, dtype="float32", layers=[3], max_per_group=5,
                                 output_dir=tmp_path / "capped"))
    assert list(capped.table["layer"]) == ["L3", "combined"] and len(capped.scores) == 10


def test_cli_prints_the_separation_table_and_reports_mistakes_in_one_line(sampled_run, monkeypatch, capsys, tmp_path):
    run, _ = sampled_run
    path = Directions(torch.randn(4, 32, generator=torch.Generator().manual_seed(0)), [0, 1, 2, 3],
                      "mean-diff").save(tmp_path / "em.safetensors")
    code, out, err = cli(monkeypatch, capsys, "detect", f"run_dir={run}", f"directions={path}", "dtype=float32",
                         "layers=[1]")
    assert code == 0, err
    assert out.splitlines()[0].split()[0] == "layer" and "L1" in out and "combined" in out
    assert f"tables in {run / 'detect' / 'em'}" in out
    code, _, err = cli(monkeypatch, capsys, "detect", f"run_dir={run}", f"directions={tmp_path / 'absent.safetensors'}")
    assert_one_line_error(code, err, "absent.safetensors", "directions file not found")
    code, _, err = cli(monkeypatch, capsys, "detect", f"run_dir={run}", f"directions={path}", "layers=[7]")
    assert_one_line_error(code, err, "no direction for layer 7")
