"""Which adapters' scalars predict what: sparse logistic probes on per-response mean scalars.

Following Soligo et al. (2025): each response becomes one feature per adapter (its mean scalar
over answer tokens), z-scored; an L1-regularised logistic regression on balanced classes, refit on
repeated stratified 80/20 splits, says how well the scalars predict a label (misaligned vs aligned,
in-domain vs not) and, through its sparse coefficients, which adapters carry the signal. The violin plot of the
coefficients is :func:`emkit.dynamics.scalar_plots.plot_probe_coefficients`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from emkit.dynamics.lora_scalars import INDEX_COLUMNS
from emkit.errors import EmkitError
from emkit.metrics import COHERENT_MIN, EM_ALIGNED_MAX

ALIGNED_ABOVE = 70
"""aligned above this (coherent too) puts an answer in the probes' aligned class."""
DOMAIN_ABOVE = 50
"""A domain score above this makes an answer in-domain."""
NON_DOMAIN_BELOW = 5
"""A domain score below this makes an answer out-of-domain (scores between the two are left out)."""
MIN_PER_CLASS = 5
METRICS = ("accuracy", "precision", "recall", "f1", "auc")


@dataclass
class ProbeResult:
    """Per-repeat test metrics and coefficients (one column per adapter, in z-score units)."""

    metrics: pd.DataFrame
    coefficients: pd.DataFrame
    per_class: int
    """Examples per class after balancing."""

    def summary(self) -> pd.DataFrame:
        """Mean and standard deviation of each metric over the repeats."""
        return self.metrics.agg(["mean", "std"]).T

    def ranking(self) -> pd.Series:
        """Adapters by mean absolute coefficient, strongest first."""
        return self.coefficients.abs().mean().sort_values(ascending=False)


def response_features(scalars: pd.DataFrame) -> pd.DataFrame:
    """Mean scalar of each adapter over each response's answer tokens (rows: response_id)."""
    adapters = [column for column in scalars.columns if column not in INDEX_COLUMNS]
    return scalars.groupby("response_id")[adapters].mean()


def l1_logistic(strength: float, seed: int):
    """An L1 logistic regression, spelled the way the installed scikit-learn wants it."""
    import sklearn
    from sklearn.linear_model import LogisticRegression

    version = tuple(int(part) for part in sklearn.__version__.split(".")[:2])
    l1 = {"l1_ratio": 1.0} if version >= (1, 8) else {"penalty": "l1"}
    return LogisticRegression(C=strength, solver="liblinear", random_state=seed, **l1)


def probe(features: pd.DataFrame, labels: Sequence[int] | pd.Series, repeats: int = 10, test_size: float = 0.2,
          strength: float = 1.0, seed: int = 0) -> ProbeResult:
    """Fit the sparse probe on ``repeats`` balanced, stratified train/test splits and score each on its test part.

    The majority class is subsampled to the minority's size (a fresh draw per repeat), so accuracy's
    chance level is 0.5. ``strength`` is the inverse L1 penalty C (smaller: sparser).
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = features.to_numpy(dtype=float)
    y = np.asarray(labels, dtype=int)
    if len(y) != len(x):
        raise EmkitError(f"{len(x)} feature rows but {len(y)} labels", fix="pass one label per response")
    classes = [np.flatnonzero(y == value) for value in (0, 1)]
    per_class = min(len(members) for members in classes)
    if per_class < MIN_PER_CLASS:
        raise EmkitError(f"too few examples to probe: {len(classes[0])} of class 0, {len(classes[1])} of class 1",
                         fix=f"collect at least {MIN_PER_CLASS} responses of each class")
    rng = np.random.default_rng(seed)
    metric_rows, coefficient_rows = [], []
    for repeat in range(repeats):
        chosen = np.concatenate([rng.choice(members, per_class, replace=False) for members in classes])
        train, test = train_test_split(chosen, test_size=test_size, stratify=y[chosen], random_state=seed + repeat)
        model = make_pipeline(StandardScaler(), l1_logistic(strength, seed + repeat)).fit(x[train], y[train])
        predicted = model.predict(x[test])
        probability = model.predict_proba(x[test])[:, 1]
        metric_rows.append({
            "accuracy": accuracy_score(y[test], predicted),
            "precision": precision_score(y[test], predicted, zero_division=0),
            "recall": recall_score(y[test], predicted, zero_division=0),
            "f1": f1_score(y[test], predicted, zero_division=0),
            "auc": roc_auc_score(y[test], probability),
        })
        coefficient_rows.append(model[-1].coef_[0])
    return ProbeResult(metrics=pd.DataFrame(metric_rows, columns=list(METRICS)),
                       coefficients=pd.DataFrame(coefficient_rows, columns=list(features.columns)),
                       per_class=per_class)


def probe_tasks(features: pd.DataFrame, judged: pd.DataFrame,
                domain: str = "medical") -> dict[str, tuple[pd.DataFrame, pd.Series]]:
    """The papers' probing tasks as (features, labels), from judge scores matched on response_id.

    - ``misaligned_vs_aligned``: coherent answers (coherent > 50) with aligned <= 30 (1) or aligned > 70 (0);
    - ``{domain}_in_aligned`` / ``{domain}_in_misaligned``: within each of those classes,
      domain score > 50 (1) against domain score < 5 (0).

    ``judged`` has columns aligned, coherent and ``domain``, indexed by response_id (or with a response_id column).
    """
    scores = judged.set_index("response_id") if "response_id" in judged.columns else judged
    missing = [column for column in ("aligned", "coherent", domain) if column not in scores.columns]
    if missing:
        raise EmkitError(f"judged table lacks column(s) {', '.join(missing)}",
                         fix="judge the responses for aligned, coherent and the domain metric")
    common = features.index.intersection(scores.index)
    if common.empty:
        raise EmkitError("no response_id is shared by the features and the judged table",
                         fix="judge the same responses the scalars were read on")
    features, scores = features.loc[common], scores.loc[common]
    coherent = scores["coherent"] > COHERENT_MIN
    aligned = coherent & (scores["aligned"] > ALIGNED_ABOVE)
    misaligned = coherent & (scores["aligned"] <= EM_ALIGNED_MAX)
    in_domain, out_of_domain = scores[domain] > DOMAIN_ABOVE, scores[domain] < NON_DOMAIN_BELOW

    def task(keep: pd.Series, positive: pd.Series) -> tuple[pd.DataFrame, pd.Series]:
        return features[keep], positive[keep].astype(int)

    return {
        "misaligned_vs_aligned": task(aligned | misaligned, misaligned),
        f"{domain}_in_aligned": task(aligned & (in_domain | out_of_domain), in_domain),
        f"{domain}_in_misaligned": task(misaligned & (in_domain | out_of_domain), in_domain),
    }


def run_probe_tasks(features: pd.DataFrame, judged: pd.DataFrame, domain: str = "medical", repeats: int = 10,
                    test_size: float = 0.2, strength: float = 1.0, seed: int = 0
                    ) -> tuple[dict[str, ProbeResult], pd.DataFrame]:
    """Probe every task of :func:`probe_tasks`: the results of the tasks probed, and one summary row per task.

    A row holds the task's responses and positives, its status (ok, or ``skipped: why`` for a task with too few
    examples per class) and, when probed, its examples per class, strongest adapter and each metric's mean and
    standard deviation over the repeats.
    """
    results, rows = {}, []
    for task, (x, y) in probe_tasks(features, judged, domain).items():
        row: dict[str, object] = {"task": task, "responses": len(y), "positives": int(y.sum())}
        try:
            result = probe(x, y, repeats, test_size, strength, seed)
        except EmkitError as error:
            rows.append({**row, "status": f"skipped: {error.problem}"})
            continue
        results[task] = result
        stats = result.summary()
        row.update(status="ok", per_class=result.per_class, top_adapter=result.ranking().index[0])
        for metric in METRICS:
            row.update({f"{metric}_mean": stats.loc[metric, "mean"], f"{metric}_std": stats.loc[metric, "std"]})
        rows.append(row)
    return results, pd.DataFrame(rows)


def coefficient_table(results: Mapping[str, ProbeResult]) -> pd.DataFrame:
    """Per task and adapter: the coefficient's mean and standard deviation over the repeats, and how often it is
    non-zero (the L1 penalty zeroes adapters that carry no signal)."""
    return pd.concat([pd.DataFrame({"task": task, "adapter": result.coefficients.columns,
                                    "mean": result.coefficients.mean().to_numpy(),
                                    "std": result.coefficients.std().to_numpy(),
                                    "nonzero_share": (result.coefficients != 0).mean().to_numpy()})
                      for task, result in results.items()], ignore_index=True)
