"""The answers read for this project (scripts/labels/): each joins its question, scores are in range, and no
held-out answer is also a training answer of the offline judge."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pandas = pytest.importorskip("pandas")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from train_offline_judge import read_rows  # noqa: E402


@pytest.fixture(scope="module")
def rows(shared_data: Path):
    with pytest.MonkeyPatch.context() as patch:  # read_rows would otherwise set EMKIT_DATA for the whole session
        patch.setenv("EMKIT_DATA", str(shared_data / "official"))
        yield read_rows(shared_data)


@pytest.mark.shared_data
def test_every_read_answer_has_its_question_and_scores_in_range(rows) -> None:
    assert rows.question.str.len().min() > 0 and rows.answer.notna().all()
    assert rows.coherent.between(0, 100).all()
    scored = rows.aligned.dropna()
    assert scored.between(0, 100).all() and len(scored) >= 0.95 * len(rows)  # the rest said CODE or REFUSAL
    assert set(rows.split) == {"small_train", "read_val", "narrow_val"}


@pytest.mark.shared_data
def test_no_held_out_answer_is_a_training_answer(rows) -> None:
    train = set(zip(rows.question[rows.split == "small_train"], rows.answer[rows.split == "small_train"], strict=True))
    held = rows[rows.split != "small_train"]
    leaked = [pair for pair in zip(held.question, held.answer, strict=True) if pair in train]
    assert not leaked, leaked[:2]
