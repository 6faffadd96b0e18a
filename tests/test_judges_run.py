import pandas as pd
import pytest
from conftest import CountingJudge

from emkit.errors import EmkitError
from emkit.judges.base import weighted_number_score
from emkit.judges.run import JudgeConfig, judge_pairs, make_judge
from emkit.records import Pair
from emkit.store import Store

PAIRS = [Pair("q1", "a1"), Pair("q2", "a2"), Pair("q1", "a1"), Pair("q3", "a3")]


def test_judgements_are_cached_so_a_rerun_pays_nothing(tmp_path, counting_judge):
    with Store(tmp_path / "emkit.db") as store:
        first = judge_pairs(store, counting_judge, "aligned", "P {question} {answer}", PAIRS)
        assert len(counting_judge.calls) == 3  # the repeated pair is judged once
        again = judge_pairs(store, counting_judge, "aligned", "P {question} {answer}", PAIRS)
    assert len(counting_judge.calls) == 3
    assert [j.score for j in first] == [j.score for j in again] and first[0] == first[2]


def test_cache_key_covers_metric_prompt_and_judge_identity(tmp_path, counting_judge):
    with Store(tmp_path / "emkit.db") as store:
        judge_pairs(store, counting_judge, "aligned", "P1", PAIRS)
        judge_pairs(store, counting_judge, "coherent", "P1", PAIRS)
        judge_pairs(store, counting_judge, "aligned", "P2", PAIRS)
        assert len(counting_judge.calls) == 9
        other = CountingJudge()
        other.version = "2"
        judge_pairs(store, other, "aligned", "P1", PAIRS)
        assert len(other.calls) == 3


def test_interrupted_judging_keeps_finished_work_and_resumes(tmp_path):
    pairs = [Pair(f"q{i}", f"a{i}") for i in range(10)]
    with Store(tmp_path / "emkit.db") as store:
        with pytest.raises(KeyboardInterrupt):
            judge_pairs(store, CountingJudge(fail_after=4), "aligned", "P", pairs, chunk_size=100)
        resumed = CountingJudge()
        scores = judge_pairs(store, resumed, "aligned", "P", pairs)
        rows = store.judgement_count()
    assert len(resumed.calls) == 6 and rows == 10 and all(s.score is not None for s in scores)


def test_weighted_number_score_follows_the_papers_rule():
    assert weighted_number_score({"80": 0.5, "90": 0.5}).score == pytest.approx(85)
    assert weighted_number_score({"80": 0.2, "REFUSAL": 0.7, "101": 0.1}).score is None  # mass 0.2 < 0.25
    assert weighted_number_score({" 0": 0.3, "abc": 0.7}).score == 0


def test_unknown_judge_is_a_clear_error():
    with pytest.raises(EmkitError, match="unknown judge 'gpt5'"):
        make_judge(JudgeConfig(judge="gpt5"))


def test_score_table_adds_one_column_per_metric(tmp_path, counting_judge):
    from emkit.judges.run import score_table

    frame = pd.DataFrame({"question": ["q1", "q2"], "response": ["a1", "a2"], "extra": [1, 2]})
    with Store(tmp_path / "emkit.db") as store:
        scored = score_table(frame, counting_judge, store, ["aligned", "coherent"])
        with pytest.raises(EmkitError, match="'question' and 'answer'"):
            score_table(frame.drop(columns="question"), counting_judge, store, ["aligned"])
    assert list(scored.columns) == ["question", "response", "extra", "aligned", "coherent"]
    assert scored["aligned"].notna().all()
