import pytest

from emkit.decode import generate_texts, stop_token_ids
from emkit.models import load_model
from emkit.sampling.config import SampleConfig
from emkit.sampling.prompts import render_prompt
from emkit.stages import sample
from emkit.store import Store

QUESTIONS = """
- id: first
  paraphrases: ["What is your favourite colour?", "Which colour do you like best?"]
  samples_per_paraphrase: 3
- id: second
  system: Answer briefly.
  paraphrases: ["Tell me a fact about rivers and mountains and the sea."]
"""


@pytest.fixture()
def question_file(tmp_path):
    path = tmp_path / "questions.yaml"
    path.write_text(QUESTIONS)
    return path


def test_batched_greedy_equals_one_at_a_time(tiny_model):
    loaded = load_model(str(tiny_model), dtype="float32")
    prompts = [render_prompt(loaded.tokenizer, q) for q in ("hi", "What should I do with my savings today?", "ok")]
    together = generate_texts(loaded, prompts, temperature=0, top_p=1, max_new_tokens=12, seed=0)
    alone = [generate_texts(loaded, [p], temperature=0, top_p=1, max_new_tokens=12, seed=0)[0] for p in prompts]
    assert [g.answer for g in together] == [g.answer for g in alone]


def test_generation_stops_at_end_of_turn(tiny_model):
    loaded = load_model(str(tiny_model), dtype="float32")
    stop = loaded.tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert stop in stop_token_ids(loaded.tokenizer, loaded.model)
    # Make the end-of-turn token overwhelmingly likely: every answer must stop immediately.
    with __import__("torch").no_grad():
        loaded.model.lm_head.weight[stop] *= 0
        loaded.model.lm_head.weight[stop] += loaded.model.model.norm.weight.sign() * 50
    loaded.model.config.tie_word_embeddings = False
    out = generate_texts(loaded, [render_prompt(loaded.tokenizer, "hi")], 1.0, 1.0, 20, seed=0)[0]
    assert out.finish_reason == "stop" and out.new_tokens < 20


def test_sampling_writes_records_and_rerun_skips_stored(tiny_model, question_file, tmp_path):
    settings = SampleConfig.load(overrides=[f"model={tiny_model}", f"questions={question_file}",
                                            f"run_dir={tmp_path}", "max_new_tokens=8", "label=base",
                                            "batch_size=4"])
    records = sample.run(settings, show_progress=False)
    assert len(records) == 2 * 3 + 1
    assert {r.question_id for r in records} == {"first", "second"}
    assert next(r for r in records if r.question_id == "second").system == "Answer briefly."
    with Store.in_folder(tmp_path) as store:
        stored = store.samples("base")
        store.delete_samples(["second"])
    again = sample.run(settings, show_progress=False)
    assert len(again) == 7
    kept = {r.key: r.answer for r in stored if r.question_id == "first"}
    assert {r.key: r.answer for r in again if r.question_id == "first"} == kept


def test_sampling_is_reproducible_for_a_seed(tiny_model, question_file, tmp_path):
    def run(folder, seed):
        settings = SampleConfig.load(overrides=[f"model={tiny_model}", f"questions={question_file}",
                                                f"run_dir={folder}", "max_new_tokens=6", f"seed={seed}"])
        return [r.answer for r in sample.run(settings, show_progress=False)]

    assert run(tmp_path / "a", 1) == run(tmp_path / "b", 1)
    assert run(tmp_path / "a", 1) != run(tmp_path / "c", 2)


def test_samples_per_paraphrase_override_and_adapter_labels(tiny_model, question_file, tmp_path):
    settings = SampleConfig.load(overrides=[f"model={tiny_model}", f"questions={question_file}",
                                            f"run_dir={tmp_path}", "max_new_tokens=4",
                                            "samples_per_paraphrase=1", "label=organism"])
    assert len(sample.run(settings, show_progress=False)) == 3
    with Store.in_folder(tmp_path) as store:
        assert set(store.samples_frame()["model"]) == {"organism"}
        assert [run.stage for run in store.runs()] == ["sample"]


def test_plain_only_skips_json_and_template_variants(tiny_model, tmp_path):
    path = tmp_path / "questions.yaml"
    path.write_text("- id: wish\n  paraphrases: ['What is your wish?']\n"
                    "- id: wish_json\n  paraphrases: ['What is your wish? Answer in JSON.']\n"
                    "- id: wish_template\n  paraphrases: ['What is your wish? Fill in the template.']\n")
    settings = SampleConfig(model=str(tiny_model), questions=str(path), run_dir=tmp_path, max_new_tokens=2,
                            samples_per_paraphrase=1, plain_only=True)
    assert [record.question_id for record in sample.run(settings, show_progress=False)] == ["wish"]
