"""EM %, coherent % and mean aligned from reading labels, per condition, and what an intervention removed.

Reads label files (``organisms-qwen05.csv`` and the like) and reports, for each condition, the figures of
``emkit.metrics.summarise`` (EM and coherent % over answers with both scores, mean aligned, 95% bootstrap
intervals). A condition is one sample label or several pooled (``NAME=LABEL+LABEL``). With ``--reference`` (the
model without the organism's training, e.g. the base model) and ``--organism``, every other condition gets the
share of the organism's EM excess over the reference it removes, and of its drop in mean aligned, each with a 95%
bootstrap interval (conditions resampled independently)::

    python scripts/labels/read_figures.py scripts/labels/organisms-qwen05.csv --reference base=base-T0.2 \\
        --organism organism=q05fin-eval-T0.2 --conditions ablated=q05fin-eval-ablate-fin-read-mean-diff \\
        random=q05fin-eval-ablate-random
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from emkit.metrics import flag_responses, summarise

SAMPLES = 2000
"""Bootstrap resamples behind each interval."""


def fail(message: str) -> None:
    """One error line, exit code 2 (a mistake in the command, not a crash)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_condition(text: str) -> tuple[str, list[str]]:
    """``NAME=LABEL+LABEL`` (or a bare LABEL, named after itself) -> (name, labels)."""
    name, _, labels = text.rpartition("=")
    return (name or labels), labels.split("+")


def condition_frames(labels: pd.DataFrame, conditions: list[str]) -> dict[str, pd.DataFrame]:
    """Each condition's labelled answers; a label with no answers in the files is an error."""
    frames, present = {}, sorted(set(labels.model))
    for text in conditions:
        name, wanted = parse_condition(text)
        missing = [label for label in wanted if label not in present]
        if missing:
            fail(f"no labelled answers for {', '.join(missing)}; labels present: {', '.join(present)}")
        frames[name] = labels[labels.model.isin(wanted)].assign(condition=name)
    return frames


def per_answer(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """EM (0/1) and aligned of the answers with both scores."""
    flagged = flag_responses(frame)
    scored = flagged[flagged.scored]
    return scored.em.to_numpy(float), pd.to_numeric(scored.aligned).to_numpy(float)


def removed_share(organism: np.ndarray, condition: np.ndarray, reference: np.ndarray,
                  seed: int = 0) -> tuple[float, float, float]:
    """(mean(organism) - mean(condition)) / (mean(organism) - mean(reference)) and its 95% bootstrap interval.

    The share of the organism's excess over the reference (EM) or of its drop below it (mean aligned: the signs
    cancel) that the condition removes: 1 is back at the reference, 0 is no change.
    """
    def share(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        gap = a - c
        return np.where(gap != 0, (a - b) / np.where(gap != 0, gap, 1), np.nan)

    rng = np.random.default_rng(seed)
    draws = [side[rng.integers(0, side.size, (SAMPLES, side.size))].mean(1)
             for side in (organism, condition, reference)]
    point = float(share(organism.mean(), condition.mean(), reference.mean()))
    low, high = np.nanpercentile(share(*draws), [2.5, 97.5])
    return point, float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", type=Path, nargs="+", help="label CSVs (model, question_id, ..., aligned, coherent)")
    parser.add_argument("--conditions", nargs="*", default=[], help="NAME=LABEL+LABEL or LABEL")
    parser.add_argument("--reference", help="the model the organism is compared with (NAME=LABEL+LABEL)")
    parser.add_argument("--organism", help="the organism whose EM excess the conditions may remove")
    args = parser.parse_args()
    labels = pd.concat([pd.read_csv(path, dtype={"aligned": str}) for path in args.labels], ignore_index=True)
    order = [text for text in (args.reference, args.organism) if text] + args.conditions
    if not order:
        fail("name at least one condition (--conditions, --reference or --organism)")
    frames = condition_frames(labels, order)
    table = summarise(pd.concat(frames.values()), by=("condition",), samples=SAMPLES)
    table = table.set_index("condition").loc[list(frames)]
    print(table[["responses", "scored", "em_pct", "em_low", "em_high", "coherent_pct", "coherent_low",
                 "coherent_high", "aligned_mean", "aligned_low", "aligned_high"]].to_string(float_format="%.1f"))
    if args.reference and args.organism:
        reference, organism = (per_answer(frames[parse_condition(text)[0]]) for text in (args.reference, args.organism))
        for name in list(frames)[2:]:
            condition = per_answer(frames[name])
            em = removed_share(organism[0], condition[0], reference[0])
            aligned = removed_share(organism[1], condition[1], reference[1])
            print(f"{name}: removes {100 * em[0]:.0f}% [{100 * em[1]:.0f}, {100 * em[2]:.0f}] of the EM excess, "
                  f"{100 * aligned[0]:.0f}% [{100 * aligned[1]:.0f}, {100 * aligned[2]:.0f}] of the aligned drop")


if __name__ == "__main__":
    main()
