import math

import pytest
import torch
from dynamics_runs import PLANTED, planted_run, write_moves

from emkit.dynamics.checkpoints import read_checkpoints
from emkit.dynamics.phase import detect_transition, local_cosine, pca_trajectory, phase_report, similarity_to_final
from emkit.stages.phase import PhaseConfig


def test_planted_rotation_is_detected_at_the_turn(tmp_path):
    run, turn_step = planted_run(tmp_path / "run")
    vectors = read_checkpoints(run)
    assert vectors.steps == list(range(0, 150, 5))
    b = vectors.b[PLANTED]
    for k in (1, 2, 5):
        found = detect_transition(b, vectors.steps, k=k)
        assert found is not None and abs(found.step - turn_step) <= 5, (k, found)
        assert found.neighbours == (found.step - 5 * k, found.step + 5 * k)
    found = detect_transition(b, vectors.steps, k=2)
    assert found.angle_degrees == pytest.approx(90, abs=5)
    assert found.value < 0.5 < found.baseline and found.depth > 0.5
    assert detect_transition(b, vectors.steps, k=2, max_dip=found.smoothed - 0.01) is None
    assert detect_transition(b, vectors.steps, k=2, max_dip=found.smoothed + 0.01) == found


def test_local_cosine_is_the_cosine_between_movement_in_and_movement_out():
    vectors = torch.tensor([[0.0, 0.0], [2.0, 0.0], [3.0, 1.0], [3.0, 2.0], [2.0, 2.0]])
    curve = local_cosine(vectors, k=1, threshold=0)
    # t=1: v1-v0 = (2,0), v2-v1 = (1,1) -> 2/(2*sqrt 2); t=2: (1,1).(0,1) / sqrt2 ; t=3: (0,1).(-1,0) = 0
    assert math.isnan(curve[0]) and math.isnan(curve[4])
    assert curve[1:4].tolist() == pytest.approx([1 / math.sqrt(2), 1 / math.sqrt(2), 0.0])
    # k=2, t=2: v2-v0 = (3,1), v4-v2 = (-1,1) -> (-3+1)/(sqrt10*sqrt2)
    assert local_cosine(vectors, k=2, threshold=0)[2].item() == pytest.approx(-2 / math.sqrt(20))


def test_local_cosine_is_the_negative_of_the_displacements_from_v_t_form():
    vectors = torch.randn(12, 5, generator=torch.Generator().manual_seed(3)).cumsum(0)
    for k in (1, 2, 3):
        curve = local_cosine(vectors, k, threshold=0)
        for t in range(k, 12 - k):
            back, ahead = vectors[t - k] - vectors[t], vectors[t + k] - vectors[t]
            assert curve[t].item() == pytest.approx(-torch.nn.functional.cosine_similarity(back, ahead, dim=0).item(),
                                                    abs=1e-5)


def test_steady_movement_is_plus_one_and_a_sudden_rotation_dips():
    path = torch.tensor([[float(i), 0.0] for i in range(6)] + [[5.0, float(i)] for i in range(1, 6)])
    curve = local_cosine(path, k=1, threshold=0)
    assert curve[1:5].tolist() == pytest.approx([1.0] * 4) and curve[6:10].tolist() == pytest.approx([1.0] * 4)
    assert curve[5].item() == pytest.approx(0.0, abs=1e-12)  # a right-angle turn
    found = detect_transition(path, list(range(0, 110, 10)), k=1, threshold=0)
    assert found.step == 50 and found.smoothed == pytest.approx(0.0, abs=1e-12) and found.baseline == pytest.approx(1)


def test_local_cosine_skips_steps_with_too_small_a_change():
    vectors = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [2.001, 0.0], [3.0, 0.0], [4.0, 0.0]])
    curve = local_cosine(vectors, k=1, threshold=0.1)
    assert curve[1].item() == pytest.approx(1.0)
    assert math.isnan(curve[2]) and math.isnan(curve[3])  # |v3 - v2| = 0.001 is under 10% of the median change
    assert curve[4].item() == pytest.approx(1.0)
    frozen = torch.zeros(5, 3)
    assert local_cosine(frozen, k=1).isnan().all()
    assert detect_transition(frozen, list(range(5))) is None


def test_similarity_to_final_and_pca_are_well_defined():
    vectors = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    similarity = similarity_to_final(vectors)
    assert math.isnan(similarity[0]) and similarity[1:].tolist() == pytest.approx([1 / math.sqrt(2), 1.0])
    coords, explained = pca_trajectory(vectors)
    assert coords.shape == (3, 2) and sum(explained) == pytest.approx(1.0)
    assert (coords[-1] >= 0).all()


def test_min_step_ignores_an_early_turn():
    moves = [[1.0, 0.0]] * 2 + [[0.0, 1.0]] * 6 + [[1.0, 1.0]] * 4  # a right angle at index 2, 45 degrees at 8
    path = torch.cat([torch.zeros(1, 2), torch.tensor(moves).cumsum(0)])
    steps = list(range(0, 130, 10))
    assert detect_transition(path, steps, threshold=0).step == 20
    later = detect_transition(path, steps, threshold=0, min_step=50)
    assert later.step == 80 and later.value == pytest.approx(1 / math.sqrt(2))


def null_report(tmp_path, moves: torch.Tensor, **overrides):
    """The phase report of a run whose B vector takes the given per-checkpoint moves."""
    run = write_moves(tmp_path / "run", moves)
    settings = [f"run={run}", "ks=[1,2]", *[f"{key}={value}" for key, value in overrides.items()]]
    return phase_report(read_checkpoints(run), PhaseConfig.load(overrides=settings))


def test_a_real_turn_clears_the_shuffled_order_null(tmp_path):
    generator = torch.Generator().manual_seed(1)
    moves = torch.cat([torch.tensor([[1.0, 0.0]]).repeat(15, 1), torch.tensor([[0.0, 1.0]]).repeat(15, 1)])
    report = null_report(tmp_path, moves + 0.05 * torch.randn(30, 2, generator=generator))
    assert report.null.cleared and report.null.p_value < 0.05
    assert report.transition is report.candidate and report.transition.step == 75
    assert report.null.observed == report.candidate.score > report.null.threshold


def test_noise_along_a_fixed_direction_is_not_claimed_as_a_transition(tmp_path):
    generator = torch.Generator().manual_seed(2)
    moves = torch.tensor([[1.0, 0.0, 0.0]]).repeat(30, 1) + 0.6 * torch.randn(30, 3, generator=generator)
    report = null_report(tmp_path, moves)
    assert report.candidate is not None  # the deepest dip still exists ...
    assert not report.null.cleared and report.transition is None  # ... but shuffles dip as deep
    summary = report.to_dict()
    assert summary["transition"] is None and summary["null"]["cleared"] is False
    assert summary["candidate"]["step"] == report.candidate.step and summary["local_cosine"]["1"][0] is None


def test_five_checkpoints_cannot_claim_a_transition(tmp_path):
    moves = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.2, 1.0], [0.0, 1.0]])
    report = null_report(tmp_path, moves, ks="[1]")
    assert report.candidate is not None and report.transition is None
    assert report.null.p_value > 0.05  # 4 moves have 24 orders: a dip this deep is common among them
