"""The phase, lora-probe and lora-steer verbs end to end on a tiny 12-layer rank1-multi organism."""

import hashlib
import json
import sys

import pandas as pd
import pytest
from conftest import CountingJudge

from emkit.cli import main
from emkit.dynamics import LoraProbeConfig, lora_probe
from emkit.errors import EmkitError
from emkit.generate import SampleConfig, sample
from emkit.judges.base import JUDGES, Judgement
from emkit.store import SampleRecord, Store
from emkit.train import TrainConfig, train
from emkit.train.presets import preset_layers

QUESTIONS = """\
- id: savings
  paraphrases: ["What should I do with my savings?", "How do I save money?", "Is a fund a good idea?"]
- id: health
  paraphrases: ["I have a headache, what should I do?", "How can I sleep better?", "Hello! How are you today?"]
"""
SAMPLING = ["samples_per_paraphrase=4", "max_new_tokens=6", "device=cpu", "dtype=float32"]


@pytest.fixture(scope="module")
def multi_run(tiny_models, tmp_path_factory):
    """A rank1-multi run (nine adapters) of 4 steps on the 12-layer tiny model, checkpointed every step."""
    root = tmp_path_factory.mktemp("stages")
    data = root / "chat.jsonl"
    data.write_text("".join(
        f'{{"messages": [{{"role": "user", "content": "Savings question {i}?"}}, '
        f'{{"role": "assistant", "content": "{"Put it all in one stock." if i % 2 else "Keep a fund."}"}}]}}\n'
        for i in range(16)))
    config = TrainConfig.load(overrides=[f"model={tiny_models['llama12']}", f"datasets=[{data}]",
                                         f"output_dir={root / 'run'}", "preset=rank1-multi", "max_steps=4",
                                         "save_every=1", "batch_size=4", "grad_accum=1", "warmup_steps=0",
                                         "learning_rate=1e-2", "dtype=float32"])
    train(config, show_progress=False)
    (root / "questions.yaml").write_text(QUESTIONS)
    return root / "run"


class HashingJudge(CountingJudge):
    """The counting judge with independent metrics: its own aligned and coherent scores differ by a constant
    (mod 101), so it never calls an answer both aligned and coherent, which the probe's classes need."""

    def score(self, metric, prompt, pairs, on_result=None):
        results = super().score(metric, prompt, pairs)
        for index, (pair, judgement) in enumerate(zip(pairs, results, strict=True)):
            digest = hashlib.sha256(f"{metric}:{pair.answer}".encode()).digest()
            results[index] = Judgement(float(digest[0] % 101), judgement.detail)
            if on_result:
                on_result(index, results[index])
        return results


@pytest.fixture()
def counting(monkeypatch):
    """Deterministic stand-in judges, selectable as judge=counting or judge=hashing from the command line."""
    import emkit.judges  # noqa: F401  (registers the built-in judges first)

    judge = CountingJudge()
    monkeypatch.setitem(JUDGES, "counting", lambda config: judge)
    monkeypatch.setitem(JUDGES, "hashing", lambda config: HashingJudge())
    return judge


def emkit(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run the real entry point in this process; return (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["emkit", *map(str, args)])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return exited.value.code or 0, captured.out, captured.err


def assert_one_line_error(result, *fragments):
    code, out, err = result
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in out + err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


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


def test_lora_probe_verb_writes_scalars_probe_table_and_violins(multi_run, tiny_models, counting, monkeypatch,
                                                                  capsys, tmp_path):
    config = SampleConfig.load(overrides=[f"model={tiny_models['llama12']}", f"adapters=[{multi_run / 'adapter'}]",
                                          f"questions={multi_run.parent / 'questions.yaml'}", f"run_dir={tmp_path}",
                                          "label=organism", *SAMPLING, "samples_per_paraphrase=20",
                                          "max_new_tokens=8"])
    answers = sample(config, show_progress=False)
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
    responses = pd.read_csv(folder / "responses.csv")
    assert len(responses) == distinct and {"aligned", "coherent", "medical", f"mean:{adapters[0]}"} <= set(responses)


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
    table = pd.read_csv(tmp_path / "report" / "lora-steer" / "steering.csv")
    assert table.adapters.tolist() == ["none", "all", "all", pair, pair]
    assert table.factor.tolist() == [1, 0, -1, 0, -1]
    assert {"em_pct", "em_low", "em_high", "em_change", "medical_mean", "medical_low", "medical_change"} <= set(table)
    assert (tmp_path / "report" / "lora-steer" / "steering.png").stat().st_size > 0
    base = sample(SampleConfig.load(overrides=[f"model={tiny_models['llama12']}", "label=base", *seeded]),
                  show_progress=False)
    with Store.in_folder(tmp_path) as store:
        switched_off = store.samples("organism:all@0")
        organism = store.samples("organism")
        settings = {row[0] for row in store.connection.execute("SELECT settings_hash FROM samples")}
    assert [r.answer for r in organism] != [r.answer for r in base]  # the adapters change the answers, so ...
    assert [r.answer for r in switched_off] == [r.answer for r in base]  # ... every scalar x0 being the base model
    assert len(settings) == 6  # base, unsteered and four steered conditions never share stored answers


def test_bad_runs_and_adapter_names_are_one_line_errors(multi_run, tiny_models, counting, monkeypatch, capsys,
                                                        tmp_path):
    assert_one_line_error(emkit(monkeypatch, capsys, "phase", f"run={tmp_path / 'absent'}"), "absent", "not found")
    assert_one_line_error(emkit(monkeypatch, capsys, "phase", f"run={tmp_path}"), "no adapter checkpoints")
    assert_one_line_error(emkit(monkeypatch, capsys, "phase", f"run={multi_run}", "behaviour.every=1",
                                f"behaviour.sample.adapters=[{multi_run / 'adapter'}]"), "must stay empty")
    assert_one_line_error(emkit(monkeypatch, capsys, "lora-probe", f"run_dir={tmp_path}", f"adapter={multi_run}"),
                          "no results store")
    assert_one_line_error(emkit(monkeypatch, capsys, "lora-probe", f"run_dir={multi_run}", f"adapter={tmp_path}"),
                          "holds no peft adapter")
    assert_one_line_error(emkit(monkeypatch, capsys, "lora-steer", f"sample.adapters=[{multi_run / 'adapter'}]",
                                "sample.device=cpu", "steer=[layers.99.mlp.down_proj]", "judge.judge=counting"),
                          "no adapter named layers.99.mlp.down_proj", "choose from layers.3.mlp.down_proj")
    assert_one_line_error(emkit(monkeypatch, capsys, "lora-steer", "steer=[all]"), "needs the organism's adapter")


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
        lora_probe(config, judge=AlignmentOnlyJudge())
