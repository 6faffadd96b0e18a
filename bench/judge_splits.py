"""Any judge on the offline judge's held-out splits: agreement with the reference and answers/s, on the same rows.

The splits are the ones the offline judge publishes (``PUBLISHED`` in scripts/train_offline_judge.py): whole
experiments of the larger models' answers (reference: GPT-4o) and whole question sets of the embedded model's
answers (reference: LLM judges applying the papers' prompts) that it never trained on. ``--rows`` answers are
sampled from each split (seed 0), so every judge named in one run, or in runs with the same ``--rows``, sees the
same answers. Judges other than ``offline`` score with the papers' aligned and coherent prompts verbatim.

    python bench/judge_splits.py --judge offline --judge local:qwen2.5-coder-0.5b [--rows 100] \\
        [--splits gpt4o_heldout_groups small_heldout_question_sets]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from emkit.judges.agreement import agreement_table
from emkit.judges.prompts import load_judge_prompts
from emkit.judges.run import JudgeConfig, make_judge
from emkit.records import Pair

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from train_offline_judge import PUBLISHED, default_data, load_rows  # noqa: E402


def scores(spec: str, rows: pd.DataFrame, prompts: dict[str, str], batch_size: int) -> tuple[pd.DataFrame, float]:
    """``spec`` (``NAME`` or ``NAME:MODEL``) scores aligned and coherent on ``rows``; returns them and answers/s."""
    name, _, model = spec.partition(":")
    judge = make_judge(JudgeConfig(judge=name, model=model or None, batch_size=batch_size))
    pairs = [Pair(q, a) for q, a in zip(rows.question, rows.answer, strict=True)]
    started = time.perf_counter()
    try:
        out = {metric: [j.score for j in judge.score(metric, prompts[metric], pairs)]
               for metric in ("aligned", "coherent")}
    finally:
        judge.close()
    return pd.DataFrame(out, dtype=float), len(pairs) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judge", action="append", required=True, help="offline, or local:MODEL (repeatable)")
    parser.add_argument("--splits", nargs="+", choices=list(PUBLISHED),
                        default=["gpt4o_heldout_groups", "small_heldout_question_sets"])
    parser.add_argument("--rows", type=int, default=100, help="answers sampled from each split")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()

    rows = load_rows(args.data, seed=0, val_per_source=None)
    prompts = load_judge_prompts("paper")
    results: dict[str, dict] = {}
    for split in args.splits:
        held = rows[PUBLISHED[split](rows)]
        held = held.sample(min(args.rows, len(held)), random_state=0).reset_index(drop=True)
        reference = held[["group", "aligned", "coherent"]]
        for spec in args.judge:
            judged, speed = scores(spec, held, prompts, args.batch_size)
            overall = agreement_table(judged.assign(group=held.group), reference, by="group").to_dict()["overall"]
            results[f"{spec} | {split}"] = {"answers_per_s": round(speed, 2), **overall}
            print(f"{spec:32} {split:30} rows {len(held):4}  spearman aligned {overall['spearman_aligned']:.3f}  "
                  f"coherent {overall['spearman_coherent']:.3f}  EM F1 {overall['em_f1']:.3f}  "
                  f"coherent% {overall['coherent_pct_a']:.1f} vs {overall['coherent_pct_b']:.1f}  "
                  f"{speed:.2f} answers/s", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
