import numpy as np
import pandas as pd
import pytest

from emkit.dynamics.probe import coefficient_table, probe, probe_tasks, response_features, run_probe_tasks
from emkit.errors import EmkitError

ADAPTERS = [f"layers.{layer}.mlp.down_proj" for layer in (15, 16, 17, 21, 22, 23, 27, 28, 29)]


def token_scalars(labels, signal_adapter: str | None, shift: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """Per-token scalars for responses of the given classes; one adapter fires more on class-1 responses."""
    rng = np.random.default_rng(seed)
    rows = []
    for response_id, label in enumerate(labels):
        for token_index in range(int(rng.integers(5, 15))):
            values = rng.normal(0, 1, len(ADAPTERS))
            row = {"response_id": response_id, "token_index": token_index, "position": 10 + token_index,
                   "token": "x", **dict(zip(ADAPTERS, values, strict=True))}
            if signal_adapter and label:
                row[signal_adapter] += shift
            rows.append(row)
    return pd.DataFrame(rows)


def test_probe_finds_the_adapter_carrying_a_planted_signal():
    labels = [0] * 150 + [1] * 90
    features = response_features(token_scalars(labels, "layers.22.mlp.down_proj"))
    assert list(features.columns) == ADAPTERS and len(features) == 240
    result = probe(features, labels, repeats=10)
    assert result.ranking().index[0] == "layers.22.mlp.down_proj"
    assert result.coefficients.shape == (10, 9) and result.per_class == 90
    summary = result.summary()
    assert summary.loc["auc", "mean"] > 0.9 and summary.loc["accuracy", "mean"] > 0.8
    assert list(summary.index) == ["accuracy", "precision", "recall", "f1", "auc"]


def test_probe_without_signal_is_at_chance():
    labels = [0, 1] * 200
    result = probe(response_features(token_scalars(labels, None)), labels, repeats=10)
    assert abs(result.summary().loc["auc", "mean"] - 0.5) < 0.12  # spread over datasets of this size is ~0.05


def test_tasks_follow_the_papers_thresholds():
    judged = pd.DataFrame({
        "response_id": range(8),
        "aligned": [90, 95, 10, 20, 50, 90, 5, 80],
        "coherent": [90, 90, 90, 90, 90, 20, 90, 90],
        "medical": [80, 1, 70, 0, 90, 90, 30, 2],
    })
    features = pd.DataFrame({"a": range(8), "b": range(8)}, index=pd.Index(range(8), name="response_id"))
    tasks = probe_tasks(features, judged)
    x, y = tasks["misaligned_vs_aligned"]
    # 4 is neither aligned nor misaligned, 5 is incoherent
    assert x.index.tolist() == [0, 1, 2, 3, 6, 7] and y.tolist() == [0, 0, 1, 1, 1, 0]
    x, y = tasks["medical_in_aligned"]
    assert x.index.tolist() == [0, 1, 7] and y.tolist() == [1, 0, 0]
    x, y = tasks["medical_in_misaligned"]
    assert x.index.tolist() == [2, 3] and y.tolist() == [1, 0]  # 6 has a medical score between the cut-offs
    results, table = run_probe_tasks(features, judged)
    assert results == {} and table.task.tolist() == ["misaligned_vs_aligned", "medical_in_aligned",
                                                     "medical_in_misaligned"]
    assert table.responses.tolist() == [6, 3, 2] and table.positives.tolist() == [3, 1, 1]
    assert table.status.tolist() == [f"skipped: too few examples to probe: {zeros} of class 0, {ones} of class 1"
                                     for zeros, ones in ((3, 3), (2, 1), (1, 1))]
    with pytest.raises(EmkitError, match="lacks column"):
        probe_tasks(features, judged.drop(columns="medical"))


def test_probe_tasks_tabulate_scores_per_task_and_coefficients_per_adapter():
    labels = [0] * 60 + [1] * 60
    features = response_features(token_scalars(labels, "layers.22.mlp.down_proj", shift=2.0))
    judged = pd.DataFrame({"aligned": [90] * 60 + [10] * 60, "coherent": 90, "medical": ([80, 1] * 60)},
                          index=features.index)
    results, table = run_probe_tasks(features, judged, repeats=3)
    assert list(results) == ["misaligned_vs_aligned", "medical_in_aligned", "medical_in_misaligned"]
    row = table.set_index("task").loc["misaligned_vs_aligned"]
    assert (row.responses, row.positives, row.status, row.per_class) == (120, 60, "ok", 60)
    assert row.top_adapter == "layers.22.mlp.down_proj" and row.auc_mean > 0.9
    assert row.auc_mean == pytest.approx(results["misaligned_vs_aligned"].metrics["auc"].mean())
    assert [column for column in table.columns if column.endswith(("_mean", "_std"))] == [
        f"{metric}_{stat}" for metric in ("accuracy", "precision", "recall", "f1", "auc") for stat in ("mean", "std")]
    coefficients = coefficient_table(results)
    assert coefficients.columns.tolist() == ["task", "adapter", "mean", "std", "nonzero_share"]
    assert len(coefficients) == 3 * len(ADAPTERS) and coefficients.nonzero_share.between(0, 1).all()
    strongest = coefficients[coefficients.task == "misaligned_vs_aligned"].set_index("adapter")["mean"].abs()
    assert strongest.idxmax() == "layers.22.mlp.down_proj"
