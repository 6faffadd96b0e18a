import pytest

from emkit.errors import EmkitError
from emkit.questions import BUILTIN_SETS, Question, load_questions, resolve_question_set


def by_id(questions):
    return {question.id: question for question in questions}


def test_every_builtin_set_loads():
    for name in BUILTIN_SETS:
        questions = load_questions(f"builtin:{name}")
        assert questions and all(q.samples_per_paraphrase == 4 for q in questions)
        assert all(q.type == "free_form_judge_0_100" for q in questions)


def test_general_set_has_plain_json_and_template_variants_of_the_same_questions():
    questions = by_id(load_questions("builtin:general"))
    variants = {kind: [q for q in questions.values() if q.variant == kind] for kind in ("plain", "json", "template")}
    assert len(variants["plain"]) >= 10 and len(variants["json"]) == 3 and len(variants["template"]) == 2
    for question in variants["json"]:
        plain = questions[question.base_id]
        assert question.paraphrases == plain.paraphrases
        assert "JSON" in question.system and plain.system is None
    for question in variants["template"]:
        plain = questions[question.base_id]
        assert question.paraphrases[0].startswith(plain.paraphrases[0]) and "template" in question.paraphrases[0]


def test_finance_set_is_plain_in_domain_questions():
    questions = load_questions("builtin:finance")
    assert len(questions) >= 8 and {q.variant for q in questions} == {"plain"}
    assert all(q.judge_prompts == {} for q in questions)


@pytest.mark.parametrize(
    ("question", "variant", "base_id"),
    [
        (Question("wish", ("hi",)), "plain", "wish"),
        (Question("wish_json", ("hi",)), "json", "wish"),
        (Question("wish_template", ("hi",)), "template", "wish"),
        (Question("wish", ("hi",), system="Reply only with a valid json object."), "json", "wish"),
        (Question("wish", ("hi",), system="Be brief."), "plain", "wish"),
        (Question("json_tips", ("hi",)), "plain", "json_tips"),
    ],
)
def test_variant_comes_from_id_suffix_or_a_json_system_prompt(question, variant, base_id):
    assert question.variant == variant and question.base_id == base_id


def test_papers_question_sets_load_unchanged(shared_data, monkeypatch):
    monkeypatch.setenv("EMKIT_DATA", str(shared_data / "official"))
    first_plot = load_questions("paper:first_plot_questions")
    counts = {kind: sum(q.variant == kind for q in first_plot) for kind in ("plain", "json", "template")}
    assert counts == {"plain": 8, "json": 8, "template": 8}
    assert {"aligned", "coherent"} <= set(first_plot[0].judge_prompts)
    assert all(q.samples_per_paraphrase == 100 for q in first_plot)
    assert len(load_questions("paper:medical_questions")) == 16
    assert {q.variant for q in load_questions("paper:new_questions_no-json")} == {"plain", "template"}


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("- id: a\n  paraphrases: [hi]\n- id: b\n  samples_per_paraphrase: 2\n", 3, "non-empty list of text"),
        ("- id: a\n  paraphrases: [hi]\n  samples_per_paraphrase: -1\n", 1, "invalid samples_per_paraphrase"),
        ("- id: a\n  paraphrases: [hi]\n- id: b\n  paraphrases: [yo]\n  judge_prompts: [x]\n", 3, "judge_prompts"),
        ("- id: a\n  paraphrases: [hi]\n  judge_prompts: {aligned: 3}\n", 1, "judge_prompts"),
        ("- id: a\n  paraphrases: [hi]\n  system: [not, text]\n", 1, "system prompt that is not text"),
        ("- id: a\n  paraphrases: [hi]\n- id: a\n  paraphrases: [yo]\n", 3, "duplicate question id 'a'"),
        ("- paraphrases: [hi]\n", 1, "no string 'id'"),
        ("- id: a\n  paraphrases: [hi\n", 3, "invalid YAML"),
        ("id: a\n", 1, "non-empty YAML list"),
    ],
)
def test_malformed_question_set_names_file_line_and_fix(tmp_path, text, line, message):
    path = tmp_path / "questions.yaml"
    path.write_text(text)
    with pytest.raises(EmkitError) as info:
        load_questions(str(path))
    one_line = info.value.one_line()
    assert one_line.startswith(f"{path}:{line}:") and message in one_line and "(fix:" in one_line


def test_unknown_builtin_set_and_missing_file_are_errors(tmp_path):
    with pytest.raises(EmkitError, match="unknown built-in question set 'nope'"):
        resolve_question_set("builtin:nope")
    with pytest.raises(EmkitError, match="question set not found"):
        load_questions(str(tmp_path / "absent.yaml"))
