import pandas as pd
import pytest

from emkit.errors import EmkitError
from emkit.tables import read_table, write_table


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_tables_round_trip_in_every_format(tmp_path, suffix):
    frame = pd.DataFrame({"question": ["q1", "q2"], "answer": ["a, with comma", "b\nnewline"], "aligned": [1.5, 90.0]})
    path = write_table(frame, tmp_path / "sub" / f"t{suffix}")
    pd.testing.assert_frame_equal(read_table(path), frame)


def test_unreadable_or_unknown_tables_give_one_clear_error(tmp_path):
    with pytest.raises(EmkitError, match="table not found"):
        read_table(tmp_path / "missing.csv")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(EmkitError, match="unsupported table format"):
        read_table(tmp_path / "t.xlsx")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(EmkitError, match="cannot read table"):
        read_table(tmp_path / "bad.parquet")


def test_csv_round_trips_answers_with_bare_carriage_returns(tmp_path):
    frame = pd.DataFrame({"response": ["one\rtwo", "three\r\nfour", "five"], "aligned": [10.0, None, 90.0]})
    path = write_table(frame, tmp_path / "scores.csv")
    assert read_table(path)["response"].tolist() == frame["response"].tolist()
