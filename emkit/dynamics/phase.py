"""The mechanistic phase transition: how an adapter vector moves through training, and when it turns.

Turner et al. (2025) find that a rank-1 organism's LoRA B vector first grows along one direction,
then rotates sharply to another, at the same point where misaligned answers appear. The signature
is the local cosine similarity ``cos(v(t) - v(t-k), v(t+k) - v(t))``, the cosine between the
movement into step t and the movement out of it: steady movement gives +1, and a sudden rotation
makes the curve dip (0 for a right angle, below 0 when the path doubles back). The transition is
the step where the smoothed curve dips lowest, claimed only when the dip is deeper than a null
calibrated on the run itself: the same per-checkpoint movements put back together in shuffled
order (same step sizes and directions, no order in time), whose deepest dips say how deep a dip
noise alone makes on this run. This is the negative of the same quantity written
``cos(v(t-k) - v(t), v(t+k) - v(t))`` (both displacements taken from v(t)), which is -1 on a
straight path and peaks at a turn; emkit uses the movement form so that "the transition is where
local cosine similarity dips" holds literally.

The plots are in :mod:`emkit.dynamics.phase_plots`; the ``emkit phase`` stage
(:mod:`emkit.stages.phase`) reads the checkpoints, writes phase.json and samples the behavioural side.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import torch

from emkit.dynamics.checkpoints import CheckpointVectors


class PhaseSettings(Protocol):
    """What the analysis reads from its config (:class:`emkit.stages.phase.PhaseConfig` documents each field)."""

    vector: str
    modules: list[str] | None
    ks: list[int]
    threshold: float
    smooth: int
    max_dip: float | None
    min_step: int
    null_permutations: int
    null_quantile: float


@dataclass
class Transition:
    """A detected turn of the trajectory and the evidence for it."""

    step: int
    k: int
    value: float
    """Local cosine at the step."""
    smoothed: float
    """Smoothed local cosine at the step (what was minimised)."""
    baseline: float
    """Median smoothed local cosine over the valid steps."""
    depth: float
    """baseline - smoothed: how far the dip falls below the run's usual value."""
    score: float
    """depth in standard deviations of the smoothed curve (used to pick the headline k)."""
    neighbours: tuple[int, int]
    """The checkpoints t-k and t+k the displacements were taken to."""
    angle_degrees: float
    """Angle between the net movement before the step and the net movement after it."""


@dataclass
class NullCalibration:
    """How deep a dip the run's own movements make in shuffled order, and how the deepest real dip compares."""

    permutations: int
    quantile: float
    threshold: float
    """The ``quantile`` of the shuffled runs' deepest dips, in sd (what a claimed transition must exceed)."""
    observed: float
    """The deepest real dip, in sd (0 when no dip was found)."""
    p_value: float
    """Share of shuffled runs (counting the real one) whose deepest dip is at least as deep."""

    @property
    def cleared(self) -> bool:
        return self.observed > self.threshold

    def describe(self) -> str:
        verb = "clears" if self.cleared else "does not clear"
        return (f"{verb} the shuffled-order null ({self.quantile:.0%} of {self.permutations} shuffled runs dip "
                f"<= {self.threshold:.1f} sd; this dip {self.observed:.1f} sd, "
                f"{self.observed - self.threshold:+.1f} sd from it, p = {self.p_value:.3f})")


@dataclass
class PhaseReport:
    """Everything the phase analysis computed, per checkpoint step."""

    steps: list[int]
    modules: list[str]
    vector: str
    norms: dict[str, torch.Tensor]
    pca: torch.Tensor
    explained_variance: list[float]
    local_cosine: dict[int, torch.Tensor]
    similarity_to_final: torch.Tensor
    transitions: dict[int, Transition | None]
    candidate: Transition | None
    """The deepest dip over every k (the headline k is the one with the highest score), claimed or not."""
    null: NullCalibration
    transition: Transition | None
    """The candidate when it clears the null, else None."""

    def headline_k(self) -> int:
        """The k of the detected transition, else the first k analysed."""
        return self.transition.k if self.transition else next(iter(self.local_cosine))

    def to_dict(self) -> dict:
        """JSON-ready summary (NaN becomes null)."""

        def listed(tensor: torch.Tensor) -> list:
            return [None if math.isnan(x) else x for x in tensor.tolist()]

        return {
            "steps": self.steps, "modules": self.modules, "vector": self.vector,
            "norms": {name: listed(values) for name, values in self.norms.items()},
            "pca": self.pca.tolist(), "explained_variance": self.explained_variance,
            "local_cosine": {str(k): listed(curve) for k, curve in self.local_cosine.items()},
            "similarity_to_final": listed(self.similarity_to_final),
            "transitions": {str(k): asdict(t) if t else None for k, t in self.transitions.items()},
            "candidate": asdict(self.candidate) if self.candidate else None,
            "null": asdict(self.null) | {"cleared": self.null.cleared},
            "transition": asdict(self.transition) if self.transition else None,
        }


def norms(vectors: torch.Tensor) -> torch.Tensor:
    """L2 norm of each step's vector ([steps, dim] -> [steps])."""
    return vectors.double().norm(dim=1)


def pca_trajectory(vectors: torch.Tensor, components: int = 2) -> tuple[torch.Tensor, list[float]]:
    """Project the trajectory onto its top principal components; return coords and explained variance ratios.

    Signs are fixed so the final checkpoint has non-negative coordinates, making plots comparable across runs.
    """
    centred = vectors.double() - vectors.double().mean(dim=0)
    _, singular, basis = torch.linalg.svd(centred, full_matrices=False)
    coords = centred @ basis[:components].T
    signs = torch.where(coords[-1] < 0, -1.0, 1.0).to(coords.dtype)
    coords = coords * signs
    total = (singular**2).sum()
    explained = (singular[:components] ** 2 / total).tolist() if total > 0 else [0.0] * min(components, len(singular))
    if coords.shape[1] < components:
        coords = torch.nn.functional.pad(coords, (0, components - coords.shape[1]))
        explained += [0.0] * (components - len(explained))
    return coords, explained


def local_cosine(vectors: torch.Tensor, k: int = 1, threshold: float = 0.1) -> torch.Tensor:
    """cos(v(t) - v(t-k), v(t+k) - v(t)) per step: +1 while moving steadily, a dip where the path turns.

    This is the negative of cos(v(t-k) - v(t), v(t+k) - v(t)). NaN at the edges, and where a change
    |v(t+k) - v(t)| (or |v(t) - v(t-k)|) is below ``threshold`` times the median change over k
    checkpoints: late in training, when the learning rate has decayed, such steps are dominated by
    noise and their direction means nothing.
    """
    count = vectors.shape[0]
    curve = torch.full((count,), math.nan, dtype=torch.float64)
    if count <= 2 * k:
        return curve
    values = vectors.double()
    change = values[k:] - values[:-k]  # change[i] = v(i+k) - v(i)
    sizes = change.norm(dim=1)
    moving = sizes[sizes > 0]
    floor = threshold * moving.median().item() if len(moving) else math.inf
    before, after = change[: count - 2 * k], change[k:]  # v(t) - v(t-k) and v(t+k) - v(t), t = k .. count-k-1
    before_size, after_size = sizes[: count - 2 * k], sizes[k:]
    cosine = (before * after).sum(dim=1) / (before_size * after_size).clamp_min(1e-300)
    valid = (before_size > 0) & (after_size > 0) & (before_size >= floor) & (after_size >= floor)
    curve[k : count - k] = torch.where(valid, cosine, torch.full_like(cosine, math.nan))
    return curve


def smooth_curve(curve: torch.Tensor, window: int) -> torch.Tensor:
    """Centred moving average over the valid (non-NaN) neighbours; NaN steps stay NaN."""
    if window <= 1:
        return curve.clone()
    half = window // 2
    smoothed = torch.full_like(curve, math.nan)
    for index in range(len(curve)):
        if not math.isnan(curve[index]):
            neighbourhood = curve[max(0, index - half) : index + half + 1]
            smoothed[index] = neighbourhood[~neighbourhood.isnan()].mean()
    return smoothed


def similarity_to_final(vectors: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each checkpoint's vector to the final one (NaN where a vector is zero)."""
    values = vectors.double()
    final = values[-1]
    sizes = values.norm(dim=1) * final.norm()
    similarity = values @ final / sizes.clamp_min(1e-300)
    return torch.where(sizes > 0, similarity, torch.full_like(similarity, math.nan))


def detect_transition(vectors: torch.Tensor, steps: Sequence[int], k: int = 1, threshold: float = 0.1,
                      smooth: int = 1, max_dip: float | None = None, min_step: int = 0) -> Transition | None:
    """The step where the trajectory turns most sharply (minimum of the smoothed local cosine), with its evidence.

    Only steps from ``min_step`` on are considered (for the dip and for the baseline). None when no
    step is valid, when the curve is flat, or when the dip stays above ``max_dip``.
    """
    curve = local_cosine(vectors, k, threshold)
    smoothed = smooth_curve(curve, smooth)
    valid = ~smoothed.isnan() & (torch.tensor(list(steps)) >= min_step)
    if not valid.any():
        return None
    index = int(torch.where(valid, smoothed, torch.full_like(smoothed, math.inf)).argmin())
    dip = smoothed[index].item()
    baseline = smoothed[valid].median().item()
    spread = smoothed[valid].std().item() if valid.sum() > 1 else 0.0
    if spread == 0 or (max_dip is not None and dip > max_dip):
        return None
    values = vectors.double()
    before, after = values[index] - values[0], values[-1] - values[index]
    scale = before.norm() * after.norm()
    angle = math.degrees(math.acos(max(-1.0, min(1.0, (before @ after / scale).item())))) if scale > 0 else math.nan
    return Transition(step=steps[index], k=k, value=curve[index].item(), smoothed=dip, baseline=baseline,
                      depth=baseline - dip, score=(baseline - dip) / spread,
                      neighbours=(steps[index - k], steps[index + k]), angle_degrees=angle)


def deepest_dip(vectors: torch.Tensor, steps: Sequence[int], settings: PhaseSettings
                ) -> tuple[dict[int, Transition | None], Transition | None]:
    """The dip found at each k, and the one with the highest score."""
    transitions = {k: detect_transition(vectors, steps, k, settings.threshold, settings.smooth, settings.max_dip,
                                        settings.min_step)
                   for k in settings.ks}
    found = [t for t in transitions.values() if t is not None]
    return transitions, max(found, key=lambda t: t.score) if found else None


def shuffled_null(vectors: torch.Tensor, steps: Sequence[int], settings: PhaseSettings, observed: float,
                  seed: int = 0) -> NullCalibration:
    """Deepest dips of the run rebuilt from its own checkpoint-to-checkpoint movements in shuffled order.

    The movements from ``min_step`` on are permuted (the earlier path stays as it is), so a shuffled
    run has the real one's step sizes and directions but no order in time: a turn that is a real
    event is a dip no shuffle reproduces, while dips made by noise or by too few checkpoints are
    matched by shuffles as often as not.
    """
    first = next((index for index, step in enumerate(steps) if step >= settings.min_step), len(steps))
    moves = vectors[1:].double() - vectors[:-1].double()
    fixed, free = moves[:first], moves[first:]
    rng = random.Random(seed)
    scores = []
    for _ in range(settings.null_permutations):
        order = list(range(len(free)))
        rng.shuffle(order)
        path = torch.cat([vectors[:1].double(), vectors[:1].double() + torch.cat([fixed, free[order]]).cumsum(0)])
        dip = deepest_dip(path, steps, settings)[1]
        scores.append(dip.score if dip is not None else 0.0)
    ordered = sorted(scores)
    threshold = ordered[min(len(ordered) - 1, math.ceil(settings.null_quantile * len(ordered)) - 1)]
    p_value = (1 + sum(score >= observed for score in scores)) / (1 + len(scores))
    return NullCalibration(permutations=len(scores), quantile=settings.null_quantile, threshold=threshold,
                           observed=observed, p_value=p_value)


def phase_report(checkpoints: CheckpointVectors, settings: PhaseSettings) -> PhaseReport:
    """The phase analysis of already-read checkpoints (the chosen modules' vectors concatenated)."""
    per_module = checkpoints.vectors(settings.vector, settings.modules)
    vectors = torch.cat(list(per_module.values()), dim=1)
    steps = checkpoints.steps
    module_norms = {name: norms(values) for name, values in per_module.items()}
    if len(per_module) > 1:
        module_norms["all"] = norms(vectors)
    pca, explained = pca_trajectory(vectors)
    transitions, candidate = deepest_dip(vectors, steps, settings)
    null = shuffled_null(vectors, steps, settings, candidate.score if candidate else 0.0)
    return PhaseReport(
        steps=steps, modules=list(per_module), vector=settings.vector, norms=module_norms, pca=pca,
        explained_variance=explained,
        local_cosine={k: local_cosine(vectors, k, settings.threshold) for k in settings.ks},
        similarity_to_final=similarity_to_final(vectors),
        transitions=transitions,
        candidate=candidate,
        null=null,
        transition=candidate if candidate is not None and null.cleared else None,
    )
