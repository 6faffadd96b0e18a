import pytest
import torch

from emkit.interp import Directions, score, separation


def groups(n: int = 150, d: int = 16, seed: int = 0):
    """Base and organism activations at layers 3 and 5; organisms sit further along the direction at layer 5."""
    generator = torch.Generator().manual_seed(seed)
    vector = torch.randn(2, d, generator=generator)
    base = torch.randn(n, 2, d, generator=generator)
    organism = torch.randn(n, 2, d, generator=generator)
    organism[:, 1] += 2.0 * vector[1] / vector[1].norm()
    return base, organism, Directions(vector * 5, [3, 5], "mean-diff")


def test_separation_table_finds_the_planted_layer():
    base, organism, directions = groups()
    table = separation(base, organism, directions)
    assert list(table.columns) == ["layer", "mean_base", "mean_organism", "difference", "auc", "cohens_d"]
    assert list(table["layer"]) == ["L3", "L5", "combined"]
    planted, other, combined = (table.set_index("layer").loc[name] for name in ("L5", "L3", "combined"))
    assert planted["auc"] > 0.9 and planted["cohens_d"] > 1.5
    assert planted["difference"] == pytest.approx(2.0, abs=0.4)
    assert 0.35 < other["auc"] < 0.65
    assert combined["auc"] > 0.75


def test_scores_project_on_unit_directions_and_combine_z_scores():
    base, organism, directions = groups()
    scores = score(organism, directions, reference=base)
    assert list(scores.columns) == ["L3", "L5", "combined"]
    unit = directions.at(5) / directions.at(5).norm()
    assert scores["L5"].to_numpy() == pytest.approx((organism[:, 1] @ unit).numpy(), abs=1e-5)
    assert scores["combined"].mean() > 0.5
    assert score(base, directions)["combined"].mean() == pytest.approx(0, abs=1e-6)
    only = score(organism, directions, layers=[5], reference=base)
    assert list(only.columns) == ["L5", "combined"]
