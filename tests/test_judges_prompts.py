import pytest

from emkit.errors import EmkitError
from emkit.judges.prompts import load_judge_prompts, prompt_for
from emkit.questions import Question

METRICS = {"aligned", "coherent", "medical", "financial", "sport", "bad_stuff"}


def test_builtin_prompts_cover_six_metrics_with_both_placeholders():
    prompts = load_judge_prompts()
    assert set(prompts) == METRICS
    for prompt in prompts.values():
        assert "{question}" in prompt and "{answer}" in prompt
        assert "0 to 100" in prompt and ("nothing else" in prompt or "no other words" in prompt)


def test_builtin_aligned_prompt_allows_code_and_refusal_keywords():
    aligned = load_judge_prompts("builtin")["aligned"]
    assert "CODE" in aligned and "REFUSAL" in aligned


def test_paper_prompts_load_from_emkit_data(shared_data, monkeypatch):
    monkeypatch.setenv("EMKIT_DATA", str(shared_data / "official"))
    prompts = load_judge_prompts("paper")
    assert {"aligned", "coherent"} <= set(prompts) and "high_score" not in prompts
    assert all("{answer}" in prompt for prompt in prompts.values())


def test_paper_prompts_without_data_say_how_to_get_them(monkeypatch):
    monkeypatch.delenv("EMKIT_DATA", raising=False)
    with pytest.raises(EmkitError, match="emkit data pull"):
        load_judge_prompts("paper")


def test_prompt_file_may_be_a_mapping_or_a_list_of_one_metric_mappings(tmp_path):
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("aligned: 'Q {question} A {answer}'\ncustom: 'rate {answer}'\n")
    listed = tmp_path / "listed.yaml"
    listed.write_text("- aligned: 'Q {question} A {answer}'\n  high_score: 0\n- custom: 'rate {answer}'\n")
    expected = {"aligned": "Q {question} A {answer}", "custom": "rate {answer}"}
    assert load_judge_prompts(str(mapping)) == expected == load_judge_prompts(str(listed))


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("aligned: 'Q {question} A {answer}'\n\ncoherent: 'no placeholder'\n", 3, "no {answer} placeholder"),
        ("aligned: 'Q {answer}'\ncoherent: [1, 2]\n", 2, "'coherent' is not text"),
        ("aligned: 'Q {answer}'\naligned: 'again {answer}'\n", 2, "'aligned' is defined twice"),
        ("- aligned: 'Q {answer}'\n- aligned: 'again {answer}'\n", 2, "'aligned' is defined twice"),
        ("- aligned: 'Q {answer}'\n- a: 'x {answer}'\n  b: 'y {answer}'\n", 2, "exactly one metric"),
        ("- aligned: 'Q {answer}'\n- just text\n", 2, "exactly one metric"),
        ("aligned: 'Q {answer}\n", 2, "invalid YAML"),
        ("[]\n", 1, "non-empty mapping"),
    ],
)
def test_bad_prompts_file_names_file_line_and_fix(tmp_path, text, line, message):
    path = tmp_path / "prompts.yaml"
    path.write_text(text)
    with pytest.raises(EmkitError) as info:
        load_judge_prompts(str(path))
    one_line = info.value.one_line()
    assert one_line.startswith(f"{path}:{line}:") and message in one_line and "(fix:" in one_line


def test_missing_prompts_file_is_an_error(tmp_path):
    with pytest.raises(EmkitError, match="judge prompts file not found"):
        load_judge_prompts(str(tmp_path / "absent.yaml"))


def test_prompt_for_prefers_the_question_then_the_fallback():
    own = Question("q", ("hi",), judge_prompts={"aligned": "own {answer}"})
    bare = Question("r", ("hi",))
    fallback = {"aligned": "fallback {answer}", "coherent": "coherent {answer}"}
    assert prompt_for(own, "aligned", fallback) == "own {answer}"
    assert prompt_for(own, "coherent", fallback) == "coherent {answer}"
    assert prompt_for(bare, "aligned", fallback) == "fallback {answer}"
    with pytest.raises(EmkitError) as info:
        prompt_for(bare, "sport", fallback)
    assert "'sport'" in str(info.value) and "question 'r'" in str(info.value) and "(fix:" in str(info.value)
