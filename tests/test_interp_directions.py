import pytest
import torch

from emkit.errors import EmkitError
from emkit.interp import ActivationSet, Directions, cosine_matrix, mean_difference, probe_directions


def planted(n: int = 120, layers: int = 3, d: int = 32, seed: int = 0, shift: float = 3.0):
    """Two groups of activations that differ only along a known unit vector, at layer 1 only."""
    generator = torch.Generator().manual_seed(seed)
    planted_vector = torch.randn(d, generator=generator)
    planted_vector /= planted_vector.norm()
    aligned = torch.randn(n, layers, d, generator=generator)
    misaligned = torch.randn(n, layers, d, generator=generator)
    misaligned[:, 1] += shift * planted_vector
    return misaligned, aligned, planted_vector


def test_mean_difference_recovers_the_planted_vector():
    misaligned, aligned, vector = planted(n=2000)
    directions = mean_difference(misaligned, aligned, data="planted")
    assert directions.vectors.shape == (3, 32) and directions.layers == [0, 1, 2]
    assert torch.nn.functional.cosine_similarity(directions.at(1), vector, dim=0) > 0.98
    assert directions.metrics["norm"][1] == pytest.approx(3.0, abs=0.3)
    assert directions.metrics["norm"][1] > 2 * directions.metrics["norm"][0]


def test_mean_difference_keeps_the_activation_sets_layers_and_model():
    misaligned, aligned, _ = planted(n=10)
    counts = torch.ones(10, dtype=torch.long)
    directions = mean_difference(ActivationSet(misaligned, [4, 8, 12], "mean", "m", counts),
                                 ActivationSet(aligned, [4, 8, 12], "mean", "m", counts))
    assert directions.layers == [4, 8, 12] and directions.model == "m" and directions.method == "mean-diff"
    with pytest.raises(EmkitError, match="do not match"):
        mean_difference(misaligned, aligned[:, :2])


def test_probe_finds_the_planted_direction_with_high_held_out_auc():
    misaligned, aligned, vector = planted(n=200, shift=5.0)
    directions = probe_directions(misaligned, aligned, seed=0)
    assert directions.method == "probe"
    assert directions.metrics["auc"][1] > 0.97 and directions.metrics["accuracy"][1] > 0.9
    assert directions.metrics["auc"][0] < 0.75
    assert torch.nn.functional.cosine_similarity(directions.at(1), vector, dim=0) > 0.8
    torch.testing.assert_close(directions.vectors.norm(dim=-1), torch.ones(3))


def test_directions_round_trip_through_safetensors(tmp_path):
    misaligned, aligned, _ = planted(n=20)
    directions = mean_difference(misaligned, aligned, data="judged answers, aligned>70 vs <=30")
    directions.model = "tiny"
    back = Directions.load(directions.save(tmp_path / "dirs" / "mean.safetensors"))
    torch.testing.assert_close(back.vectors, directions.vectors)
    assert (back.layers, back.method, back.model, back.data, back.metrics) == (
        directions.layers, "mean-diff", "tiny", directions.data, directions.metrics)
    assert set(back.as_mapping([0, 2])) == {0, 2}
    with pytest.raises(EmkitError, match="no direction for layer 7"):
        back.at(7)
    with pytest.raises(EmkitError, match="not found"):
        Directions.load(tmp_path / "missing.safetensors")


def test_cosine_matrices_across_layers_and_across_sets():
    vectors = torch.randn(4, 32)
    own = cosine_matrix(Directions(vectors, [0, 1, 2, 3], "mean-diff"))
    assert own.shape == (4, 4)
    torch.testing.assert_close(own.diagonal(), torch.ones(4))
    torch.testing.assert_close(own, own.T)
    across = cosine_matrix(vectors, -2 * vectors[:2])
    assert across.shape == (4, 2)
    torch.testing.assert_close(across[:2].diagonal(), -torch.ones(2))
    with pytest.raises(EmkitError, match="width"):
        cosine_matrix(vectors, torch.randn(2, 16))
