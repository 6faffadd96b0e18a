"""Write the answer text behind ``organisms.csv`` and ``demo.csv`` to ``answers.parquet`` (no question text).

The labels keep only keys and a hash of each answer; the offline judge's training script needs the text.
Rerun the organism search (``bench/organism_search.py``) and ``emkit demo`` with seed 0, then::

    python scripts/labels/export_answers.py SEARCH_OUT/emkit.db emkit-demo/emkit.db

Every labelled answer must be found, with the same text (its hash), or nothing is written.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
KEYS = ["model", "question_id", "paraphrase_index", "sample_index", "answer_sha"]
LABELS = {"organisms.csv": "paper:first_plot_questions", "demo.csv": "builtin:general"}
"""Each label file and the question set its answers were written for."""


def answer_sha(text: str) -> str:
    """The labels' key for an answer's text (``answer_sha``)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def answers(store: Path) -> pd.DataFrame:
    with sqlite3.connect(store) as connection:
        frame = pd.read_sql("SELECT model, question_id, paraphrase_index, sample_index, answer FROM samples",
                            connection)
    return frame.assign(answer_sha=frame.answer.map(answer_sha))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", type=Path, nargs="+", help="emkit.db files holding the labelled answers")
    parser.add_argument("--out", type=Path, default=HERE / "answers.parquet")
    args = parser.parse_args()
    found = pd.concat([answers(store) for store in args.stores]).drop_duplicates(KEYS)
    parts = []
    for name, questions in LABELS.items():
        keys = pd.read_csv(HERE / name)[KEYS]
        joined = keys.merge(found, on=KEYS, how="left")
        missing = int(joined.answer.isna().sum())
        if missing:
            sys.exit(f"{name}: {missing} of {len(keys)} labelled answers are not in the stores given; "
                     "rerun the search and the demo with seed 0")
        parts.append(joined.assign(labels=name, questions=questions))
    out = pd.concat(parts, ignore_index=True)
    out.to_parquet(args.out, index=False)
    print(f"{len(out)} answers -> {args.out}")


if __name__ == "__main__":
    main()
