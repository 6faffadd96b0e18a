import torch

from emkit.interp import Directions
from emkit.interp.conditions import ablation_targets, applied_layers, fingerprint


def test_fingerprints_name_a_random_direction_by_its_seed_and_any_other_by_its_values():
    vector = torch.randn(32)
    assert fingerprint("random", vector, 3) == fingerprint("ablate-random", vector * 5, 3) == "seed3x32"
    assert fingerprint("steer", vector, 3) == fingerprint("steer", vector.clone(), 4)
    assert fingerprint("steer", vector, 0) != fingerprint("steer", vector + 1e-3, 0)
    assert fingerprint("ablate", {1: vector}, 0) != fingerprint("ablate", {2: vector}, 0)


def test_ablation_targets_one_direction_or_each_layers_own():
    directions = Directions(torch.randn(4, 32), [0, 1, 2, 3], "mean-diff")
    target, baseline, layers = ablation_targets(directions, 2, [1, 3], seed=0)
    torch.testing.assert_close(target, directions.at(2))
    assert abs(float(baseline.norm() - target.norm())) < 1e-4, "the random baseline is norm-matched"
    assert layers == [1, 3] and applied_layers(target, layers) == "1,3" and applied_layers(target, None) == "all"
    own, random_own, none = ablation_targets(directions, None, [1, 3], seed=0)
    assert sorted(own) == sorted(random_own) == [1, 3] and none is None
    assert applied_layers(own, none) == "own:1,3"
