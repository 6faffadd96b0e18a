"""How far two judges agree: rank correlation per metric, and the rates a paper reports, per group.

Swapping GPT-4o for a cheaper judge is only safe if the numbers a paper reports survive the swap, so the
comparison is made on those numbers: Spearman per metric over rows both judges scored, and per group the
coherent rate (coherent > 50), the EM rate (the papers' rule, :func:`emkit.metrics.flag_responses`) and the
mean aligned score of each judge, their difference with a paired bootstrap 95% interval, plus Cohen's kappa
and F1 on the per-answer EM label (the second table taken as the reference). Rates are over all rows; a row
whose aligned score is missing (code, refusal) is not EM and not coherent-scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from emkit.metrics import bootstrap_interval, flag_responses


@dataclass
class AgreementTable:
    """Overall figures (one value per key) and one row per group (``groups``); A is judged, B the reference."""

    overall: dict[str, float] = field(default_factory=dict)
    groups: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_dict(self) -> dict[str, Any]:
        rows = self.groups.replace({np.nan: None}).to_dict(orient="records")
        return {"overall": self.overall, "groups": rows}


def _spearman(a: pd.Series, b: pd.Series) -> tuple[float, int]:
    both = a.notna() & b.notna()
    if both.sum() < 3 or a[both].nunique() < 2 or b[both].nunique() < 2:
        return float("nan"), int(both.sum())
    return float(a[both].rank().corr(b[both].rank())), int(both.sum())


def _flags(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per row: EM and coherent (> 50) under the papers' rule; no score counts as neither."""
    flagged = flag_responses(frame)
    return flagged["em"].to_numpy(bool), flagged["coherent_ok"].to_numpy(bool)


def _rate_row(prefix: str, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Rates in percent for A and B, A - B, and a paired bootstrap interval of the difference."""
    diff = a.astype(float) - b.astype(float)
    low, high = bootstrap_interval(diff)
    return {f"{prefix}_a": 100 * float(a.mean()), f"{prefix}_b": 100 * float(b.mean()),
            f"{prefix}_diff": 100 * float(diff.mean()), f"{prefix}_diff_low": 100 * low,
            f"{prefix}_diff_high": 100 * high}


def _kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two binary labels (1.0 when both are constant and equal, NaN when undefined)."""
    observed = float(np.mean(a == b))
    expected = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    if expected == 1.0:
        return 1.0 if observed == 1.0 else float("nan")
    return (observed - expected) / (1 - expected)


def agreement_table(judged: pd.DataFrame, reference: pd.DataFrame, by: str | None = None,
                    metrics: Sequence[str] = ("aligned", "coherent")) -> AgreementTable:
    """Agreement of ``judged`` (A) with ``reference`` (B), row for row (the two frames must be aligned).

    Both need ``aligned`` and ``coherent`` columns for the rates; ``metrics`` are the columns to correlate
    (missing ones are skipped); ``by`` names a grouping column of ``reference`` (or of ``judged``).
    """
    if len(judged) != len(reference):
        raise ValueError(f"the tables must have the same rows ({len(judged)} vs {len(reference)})")
    judged, reference = judged.reset_index(drop=True), reference.reset_index(drop=True)
    em_a, coherent_a = _flags(judged)
    em_b, coherent_b = _flags(reference)
    overall: dict[str, float] = {"rows": len(judged)}
    for metric in metrics:
        if metric in judged and metric in reference:
            a = pd.to_numeric(judged[metric], errors="coerce")
            b = pd.to_numeric(reference[metric], errors="coerce")
            overall[f"spearman_{metric}"], overall[f"{metric}_rows"] = _spearman(a, b)
    overall |= _rate_row("coherent_pct", coherent_a, coherent_b) | _rate_row("em_pct", em_a, em_b)
    overall["em_kappa"] = _kappa(em_a, em_b)
    true_positive = float(np.sum(em_a & em_b))
    overall["em_f1"] = 2 * true_positive / max(em_a.sum() + em_b.sum(), 1)
    groups = pd.DataFrame()
    if by is not None:
        labels = (reference[by] if by in reference else judged[by]).astype(str).to_numpy()
        aligned_a = pd.to_numeric(judged["aligned"], errors="coerce").to_numpy(float)
        aligned_b = pd.to_numeric(reference["aligned"], errors="coerce").to_numpy(float)
        records = []
        for name in sorted(set(labels)):
            rows = labels == name
            record: dict[str, Any] = {by: name, "rows": int(rows.sum())}
            record |= _rate_row("coherent_pct", coherent_a[rows], coherent_b[rows])
            record |= _rate_row("em_pct", em_a[rows], em_b[rows])
            record["mean_aligned_a"] = float(np.nanmean(aligned_a[rows])) if np.isfinite(aligned_a[rows]).any() \
                else float("nan")
            record["mean_aligned_b"] = float(np.nanmean(aligned_b[rows])) if np.isfinite(aligned_b[rows]).any() \
                else float("nan")
            for metric in metrics:
                if metric in judged and metric in reference:
                    record[f"spearman_{metric}"] = _spearman(pd.Series(pd.to_numeric(judged[metric][rows])),
                                                             pd.Series(pd.to_numeric(reference[metric][rows])))[0]
            records.append(record)
        groups = pd.DataFrame(records)
        overall["groups"] = len(groups)
        overall["coherent_pct_error_max"] = float(groups.coherent_pct_diff.abs().max())
        overall["coherent_pct_error_mean"] = float(groups.coherent_pct_diff.abs().mean())
        overall["em_pct_error_max"] = float(groups.em_pct_diff.abs().max())
        overall["em_pct_error_mean"] = float(groups.em_pct_diff.abs().mean())
    return AgreementTable(overall, groups)


def align_tables(a: pd.DataFrame, b: pd.DataFrame, on: str | None = None,
                 names: tuple[str, str] = ("A", "B")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows the two tables share, in the same order.

    Matched on the column ``on`` when given (e.g. ``id``), else on the exact (question, answer) text, the n-th
    copy of a repeated answer in A with the n-th in B (``response`` is read as ``answer``). Raises an
    :class:`EmkitError` when nothing matches or a key is missing.
    """
    from emkit.errors import EmkitError

    def keyed(frame: pd.DataFrame, name: str) -> pd.DataFrame:
        frame = frame.rename(columns={"response": "answer"}) if "answer" not in frame else frame
        if on is not None:
            if on not in frame:
                raise EmkitError(f"table {name} has no column '{on}'", fix="name a column both tables have with --on")
            key = frame[on].astype(str)
        else:
            if "question" not in frame or "answer" not in frame:
                raise EmkitError(f"table {name} needs 'question' and 'answer' (or 'response') columns to match rows",
                                 fix="or match on an id column both tables have with --on COLUMN")
            key = frame["question"].astype(str) + "\x00" + frame["answer"].fillna("").astype(str)
        out = frame.assign(_key=key.to_numpy())
        return out.assign(_copy=out.groupby("_key").cumcount().to_numpy())

    left, right = keyed(a, names[0]), keyed(b, names[1])
    index = left[["_key", "_copy"]].reset_index().merge(right[["_key", "_copy"]].reset_index(),
                                                        on=["_key", "_copy"], suffixes=("_a", "_b"))
    if index.empty:
        raise EmkitError("the two tables share no rows", fix="check that they score the same answers, or use --on")
    drop = ["_key", "_copy"]
    return (left.loc[index.index_a].drop(columns=drop).reset_index(drop=True),
            right.loc[index.index_b].drop(columns=drop).reset_index(drop=True))
