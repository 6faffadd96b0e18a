import pytest

from emkit.errors import EmkitError
from emkit.records import SampleRecord
from emkit.sampling.config import SampleConfig
from emkit.store import Store


def record(index, answer="a"):
    return SampleRecord("base", "h", "q1", 0, index, "question?", None, answer, "stop", 3, "run")


def test_insert_is_idempotent_on_the_natural_key(tmp_path):
    with Store.in_folder(tmp_path) as store:
        store.add_samples([record(0), record(1)])
        store.add_samples([record(1, answer="other"), record(2)])
        answers = [r.answer for r in store.samples("base")]
        assert answers == ["a", "a", "a"]
        assert store.sample_keys("base", "h") == {("q1", 0, 0), ("q1", 0, 1), ("q1", 0, 2)}
        assert store.sample_keys("base", "other-settings") == set()


def test_run_configs_are_recorded_once_by_hash(tmp_path):
    config = SampleConfig(label="x")
    with Store.in_folder(tmp_path) as store:
        first = store.record_run("sample", config)
        assert store.record_run("sample", config) == first
        assert len(store.runs()) == 1


def test_runs_come_back_oldest_first_with_their_configs(tmp_path):
    with Store.in_folder(tmp_path) as store:
        store.record_run("sample", SampleConfig(label="first"))
        store.record_run("other", SampleConfig(label="between"))
        store.record_run("sample", SampleConfig(label="second"))
        assert [run.stage for run in store.runs()] == ["sample", "other", "sample"]
        recorded = store.runs("sample")
    assert [run.config["label"] for run in recorded] == ["first", "second"]
    assert recorded[0].config_hash == SampleConfig(label="first").config_hash()


def test_sample_labels_and_deleting_answers(tmp_path):
    other = SampleRecord("organism", "h", "q2", 0, 0, "question?", None, "b", "stop", 3, "run")
    with Store.in_folder(tmp_path) as store:
        store.add_samples([record(0), record(1), other])
        assert store.sample_labels() == ["base", "organism"]
        assert store.delete_samples(["q1"], model="organism") == 0
        assert store.delete_samples(["q1"]) == 2
        assert store.sample_labels() == ["organism"]
        assert store.sample_keys("base", "h") == set()


def test_records_survive_reopening(tmp_path):
    with Store.in_folder(tmp_path) as store:
        store.add_samples([record(0)])
    with Store.in_folder(tmp_path) as store:
        assert len(store.samples_frame()) == 1


def test_unwritable_location_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(EmkitError, match="cannot open the results store"):
        Store(blocker / "sub" / "emkit.db")


def test_scores_frame_joins_answers_with_a_judges_latest_scores(tmp_path, counting_judge):
    from emkit.judges.run import judge_pairs
    from emkit.records import Pair

    with Store(tmp_path / "emkit.db") as store:
        store.add_samples([SampleRecord("organism", "h", "q1", 0, i, "Q?", None, f"answer {i}", "stop", 3)
                           for i in range(3)])
        judge_pairs(store, counting_judge, "aligned", "P", [Pair("Q?", "answer 0"), Pair("Q?", "answer 1")])
        frame = store.scores_frame(counting_judge.identity)
        assert store.judge_identities() == [counting_judge.identity]
        assert store.judgement_count() == 2
        assert len(store.prompt_hashes("aligned")) == 1 and store.prompt_hashes("coherent") == []
    assert list(frame.columns[:4]) == ["response", "question", "question_id", "aligned"]
    assert frame["aligned"].notna().tolist() == [True, True, False]
