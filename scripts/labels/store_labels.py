"""Write reading labels into a run's store as a judge, so stages that split answers by a judge can use them.

The labels (``organisms-qwen05.csv`` and the like: model, question_id, paraphrase_index, sample_index, answer_sha,
aligned, coherent) are matched to the store's answers by their keys and the hash of the answer text; each label
becomes a judgement of ``--judge`` (aligned CODE / REFUSAL: no score). Then, for example::

    python scripts/labels/store_labels.py runs/search-qwen2.5-coder-0.5b scripts/labels/organisms-qwen05.csv
    emkit directions run_dir=runs/search-qwen2.5-coder-0.5b judge=read-blind "labels=[MODEL-LABEL]"
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from export_answers import KEYS, answer_sha

from emkit.records import Judgement, Pair, text_key
from emkit.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="folder holding emkit.db")
    parser.add_argument("labels", type=Path, help="CSV of reading labels")
    parser.add_argument("--judge", default="read-blind", help="judge name the labels are stored under")
    args = parser.parse_args()
    labels = pd.read_csv(args.labels, dtype={"aligned": str})
    with Store.in_folder(args.run_dir) as store:
        answers = store.samples_frame()
        answers["answer_sha"] = answers.answer.map(answer_sha)
        matched = answers.merge(labels, on=KEYS)
        detail = {"source": f"reading labels, {args.labels.name}"}
        for metric in ("aligned", "coherent"):
            scores = pd.to_numeric(matched[metric], errors="coerce")
            rows = [(text_key(Pair(q, a)), Pair(q, a), Judgement(None if pd.isna(v) else float(v), detail))
                    for q, a, v in zip(matched.question, matched.answer, scores, strict=True)]
            store.add_judgements(args.judge, metric, "reading", rows)
    print(f"{len(matched)} of {len(labels)} labels matched answers in {args.run_dir}; stored as judge {args.judge}")


if __name__ == "__main__":
    main()
