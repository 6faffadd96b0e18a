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

The behavioural side samples answers with each checkpoint's adapter, or with the final adapter's
B vector scaled, so the caller can judge them and plot EM % against the mechanistic curve.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from safetensors.torch import load_file, save_file

from emkit.config import StageConfig
from emkit.dynamics.checkpoints import (
    ADAPTER_FILE,
    CheckpointVectors,
    local_checkpoints,
    read_checkpoints,
    select_steps,
)
from emkit.errors import EmkitError
from emkit.generate import SampleConfig, sample
from emkit.judges.run import JudgeConfig
from emkit.models import LoadedModel, load_model
from emkit.store import SampleRecord

Behaviour = Mapping[int, float | tuple[float, float, float]]


class PhaseBehaviour(BaseModel):
    """The behavioural side of the phase analysis: which checkpoints and B-vector scales to sample and judge."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, protected_namespaces=())

    every: PositiveInt | None = None
    """Sample every n-th checkpoint (and always the last); unset: no checkpoint sampling."""
    factors: list[float] = Field(default_factory=list)
    """Scale the final adapter's B vectors by each factor and sample (e.g. [0, 0.5, 1, 2]); empty: no sweep."""
    sample: SampleConfig = Field(default_factory=SampleConfig)
    """Questions and sampling; model unset: the run's base model; run_dir unset: the run's store; no adapters."""
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    """Judge and metrics for EM % and coherent % (domain metrics in judge.metrics add their mean scores)."""
    bootstrap_samples: PositiveInt = 1000
    """Bootstrap resamples behind each 95% interval."""

    @property
    def enabled(self) -> bool:
        return self.every is not None or bool(self.factors)


class PhaseConfig(StageConfig):
    """Which run, which vector and which local-cosine settings the phase analysis uses."""

    run: str
    """Local run folder (or its checkpoints/ folder), or a hub repo id with checkpoint-N folders."""
    revision: str | None = None
    """Hub branch, tag or commit (hub runs only)."""
    vector: Literal["A", "B"] = "B"
    """Which LoRA vector to follow: B (the written direction, as in the paper) or A (the read direction)."""
    modules: list[str] | None = None
    """Adapter modules to analyse, e.g. [layers.24.mlp.down_proj]; unset means all, concatenated."""
    ks: list[PositiveInt] = Field(default_factory=lambda: [1, 2, 5], min_length=1)
    """Checkpoint offsets k of the local cosine similarity."""
    threshold: float = Field(0.1, ge=0)
    """Skip steps whose change over k checkpoints is below this fraction of the run's median change."""
    smooth: PositiveInt = 1
    """Centred moving-average window (checkpoints) applied before looking for the dip."""
    max_dip: float | None = None
    """Report a transition only where the smoothed local cosine falls to this value or below (e.g. 0.5)."""
    min_step: int = Field(0, ge=0)
    """Look for the dip from this training step on (B's first moves away from zero are Adam's sign-like steps)."""
    null_permutations: PositiveInt = 200
    """Shuffled-order trajectories (the run's own movements in random order) that calibrate the transition claim."""
    null_quantile: float = Field(0.95, gt=0, lt=1)
    """A transition is claimed only when its dip (in sd) exceeds this quantile of the shuffled runs' deepest dips."""
    output_dir: Path | None = None
    """Where phase.json, the tables and the plots go; unset means the run folder's report/phase/ (local runs)."""
    behaviour: PhaseBehaviour = Field(default_factory=PhaseBehaviour)
    """Also sample, judge and plot EM % per checkpoint and per B-vector scale (set behaviour.every or .factors)."""


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
    plots: dict[str, Path] = field(default_factory=dict)

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
            "plots": {name: path.name for name, path in self.plots.items()},
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


def deepest_dip(vectors: torch.Tensor, steps: Sequence[int], config: PhaseConfig
                ) -> tuple[dict[int, Transition | None], Transition | None]:
    """The dip found at each k, and the one with the highest score."""
    transitions = {k: detect_transition(vectors, steps, k, config.threshold, config.smooth, config.max_dip,
                                        config.min_step)
                   for k in config.ks}
    found = [t for t in transitions.values() if t is not None]
    return transitions, max(found, key=lambda t: t.score) if found else None


def shuffled_null(vectors: torch.Tensor, steps: Sequence[int], config: PhaseConfig, observed: float,
                  seed: int = 0) -> NullCalibration:
    """Deepest dips of the run rebuilt from its own checkpoint-to-checkpoint movements in shuffled order.

    The movements from ``min_step`` on are permuted (the earlier path stays as it is), so a shuffled
    run has the real one's step sizes and directions but no order in time: a turn that is a real
    event is a dip no shuffle reproduces, while dips made by noise or by too few checkpoints are
    matched by shuffles as often as not.
    """
    first = next((index for index, step in enumerate(steps) if step >= config.min_step), len(steps))
    moves = vectors[1:].double() - vectors[:-1].double()
    fixed, free = moves[:first], moves[first:]
    rng = random.Random(seed)
    scores = []
    for _ in range(config.null_permutations):
        order = list(range(len(free)))
        rng.shuffle(order)
        path = torch.cat([vectors[:1].double(), vectors[:1].double() + torch.cat([fixed, free[order]]).cumsum(0)])
        dip = deepest_dip(path, steps, config)[1]
        scores.append(dip.score if dip is not None else 0.0)
    ordered = sorted(scores)
    threshold = ordered[min(len(ordered) - 1, math.ceil(config.null_quantile * len(ordered)) - 1)]
    p_value = (1 + sum(score >= observed for score in scores)) / (1 + len(scores))
    return NullCalibration(permutations=len(scores), quantile=config.null_quantile, threshold=threshold,
                           observed=observed, p_value=p_value)


def analyse_phase(config: PhaseConfig, plots: bool = True) -> PhaseReport:
    """Run the mechanistic phase analysis of one run; write phase.json (and the plots) to its output folder."""
    report = phase_report(read_checkpoints(config.run, revision=config.revision), config)
    output = phase_folder(config)
    output.mkdir(parents=True, exist_ok=True)
    if plots:
        report.plots = {
            "norms": plot_norms(report.steps, report.norms, output / "norms.png"),
            "pca": plot_pca_trajectory(report.steps, report.pca, output / "pca.png", report.explained_variance,
                                       report.transition),
            "local_cosine": plot_local_cosine(report.steps, report.local_cosine, output / "local_cosine.png",
                                              report.transition),
            "similarity_to_final": plot_similarity_to_final(report.steps, report.similarity_to_final,
                                                            output / "similarity_to_final.png", report.transition),
        }
    (output / "phase.json").write_text(json.dumps(report.to_dict(), indent=1))
    return report


def phase_folder(config: PhaseConfig) -> Path:
    """Where the phase analysis writes: output_dir, else the local run folder's report/phase/."""
    if config.output_dir is not None:
        return config.output_dir
    run = Path(config.run).expanduser()
    if not run.exists():
        raise EmkitError("a hub run needs output_dir for its phase analysis", fix="set output_dir=...")
    return (run.parent if run.name == "checkpoints" else run) / "report" / "phase"


def phase_report(checkpoints: CheckpointVectors, config: PhaseConfig) -> PhaseReport:
    """The phase analysis of already-read checkpoints (the chosen modules' vectors concatenated)."""
    per_module = checkpoints.vectors(config.vector, config.modules)
    vectors = torch.cat(list(per_module.values()), dim=1)
    steps = checkpoints.steps
    module_norms = {name: norms(values) for name, values in per_module.items()}
    if len(per_module) > 1:
        module_norms["all"] = norms(vectors)
    pca, explained = pca_trajectory(vectors)
    transitions, candidate = deepest_dip(vectors, steps, config)
    null = shuffled_null(vectors, steps, config, candidate.score if candidate else 0.0)
    return PhaseReport(
        steps=steps, modules=list(per_module), vector=config.vector, norms=module_norms, pca=pca,
        explained_variance=explained,
        local_cosine={k: local_cosine(vectors, k, config.threshold) for k in config.ks},
        similarity_to_final=similarity_to_final(vectors),
        transitions=transitions,
        candidate=candidate,
        null=null,
        transition=candidate if candidate is not None and null.cleared else None,
    )


# Plots -------------------------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    _pyplot().close(figure)
    return path


def _mark(axes, transition: Transition | None) -> None:
    if transition is not None:
        axes.axvline(transition.step, color="crimson", linestyle="--", alpha=0.8,
                     label=f"transition (step {transition.step})")


def plot_norms(steps: Sequence[int], curves: Mapping[str, torch.Tensor], path: Path) -> Path:
    """Norm of each adapter's vector per step: the growth phase, and where learning ignites."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4))
    for name, values in curves.items():
        axes.plot(steps, values.tolist(), label=name, linewidth=2.2 if name == "all" else 1.2)
    axes.set_xlabel("training step")
    axes.set_ylabel("vector norm")
    axes.set_title("Adapter vector norms")
    axes.grid(alpha=0.3)
    if len(curves) <= 12:
        axes.legend(fontsize=7)
    return _save(figure, path)


def plot_pca_trajectory(steps: Sequence[int], coords: torch.Tensor, path: Path,
                        explained: Sequence[float] | None = None, transition: Transition | None = None) -> Path:
    """The trajectory in its top-2 PCA plane, coloured by step, with the transition step circled."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 5))
    xs, ys = coords[:, 0].tolist(), coords[:, 1].tolist()
    axes.plot(xs, ys, color="grey", alpha=0.4, linewidth=0.8)
    points = axes.scatter(xs, ys, c=list(steps), cmap="viridis", s=18, zorder=3)
    figure.colorbar(points, ax=axes, label="training step")
    if transition is not None and transition.step in steps:
        index = list(steps).index(transition.step)
        axes.scatter([xs[index]], [ys[index]], s=140, facecolors="none", edgecolors="crimson", linewidths=2,
                     zorder=4, label=f"transition (step {transition.step})")
        axes.legend(fontsize=8)
    share = [f" ({100 * value:.0f}% var)" for value in explained] if explained else ["", ""]
    axes.set_xlabel(f"PC1{share[0]}")
    axes.set_ylabel(f"PC2{share[1]}")
    axes.set_title("PCA trajectory")
    axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_local_cosine(steps: Sequence[int], curves: Mapping[int, torch.Tensor], path: Path,
                      transition: Transition | None = None) -> Path:
    """Local cosine similarity per k: +1 on straight stretches, a dip where the trajectory turns."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4))
    for k, curve in curves.items():
        axes.plot(steps, curve.tolist(), marker=".", label=f"k={k}")
    _mark(axes, transition)
    axes.set_ylim(-1.05, 1.05)
    axes.set_xlabel("training step")
    axes.set_ylabel("cos(v(t) - v(t-k), v(t+k) - v(t))")
    axes.set_title("Local cosine similarity")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)


def plot_similarity_to_final(steps: Sequence[int], similarity: torch.Tensor, path: Path,
                             transition: Transition | None = None) -> Path:
    """Cosine similarity of each checkpoint to the final vector: when the final direction is reached."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(steps, similarity.tolist(), marker=".")
    _mark(axes, transition)
    axes.set_ylim(-1.05, 1.05)
    axes.set_xlabel("training step")
    axes.set_ylabel("cosine similarity to final")
    axes.set_title("Similarity to the final vector")
    axes.grid(alpha=0.3)
    if transition is not None:
        axes.legend(fontsize=8)
    return _save(figure, path)


def plot_mechanism_vs_behaviour(steps: Sequence[int], mechanism: Sequence[float] | torch.Tensor,
                                behaviour: Behaviour, path: Path, mechanism_label: str = "local cosine",
                                behaviour_label: str = "EM %", transition: Transition | None = None) -> Path:
    """A mechanistic curve over a behavioural one on a shared step axis, to see whether they change together.

    ``behaviour`` maps a step to a value, or to (value, low, high) for an interval.
    """
    plt = _pyplot()
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7, 6))
    values = mechanism.tolist() if isinstance(mechanism, torch.Tensor) else list(mechanism)
    top.plot(steps, values, marker=".", color="tab:blue")
    top.set_ylabel(mechanism_label)
    ordered = sorted(behaviour.items())
    xs = [step for step, _ in ordered]
    ys = [value[0] if isinstance(value, tuple) else value for _, value in ordered]
    bottom.plot(xs, ys, marker="o", color="tab:red")
    intervals = [(step, value) for step, value in ordered if isinstance(value, tuple)]
    if intervals:
        bottom.fill_between([step for step, _ in intervals], [value[1] for _, value in intervals],
                            [value[2] for _, value in intervals], color="tab:red", alpha=0.2)
    bottom.set_ylabel(behaviour_label)
    bottom.set_xlabel("training step")
    for axes in (top, bottom):
        _mark(axes, transition)
        axes.grid(alpha=0.3)
    top.set_title("Mechanism and behaviour during training")
    return _save(figure, path)


# Behaviour ---------------------------------------------------------------------------------------------------------


def sample_checkpoints(run: str | Path, config: SampleConfig, steps: Sequence[int] | None = None, every: int = 1,
                       show_progress: bool = False) -> dict[int, list[SampleRecord]]:
    """Sample ``config``'s questions with each chosen checkpoint's adapter, labelled ``ckpt-N`` in the store.

    ``steps`` names the checkpoints; otherwise every ``every``-th one is used, and always the last
    (the trained organism). The base model loads once and each checkpoint's weights are swapped in.
    """
    available = local_checkpoints(run)
    if steps is not None:
        chosen = select_steps(available, steps, run)
    else:
        last = max(available)
        chosen = dict(list(available.items())[:: max(1, every)]) | {last: available[last]}
    samples = sample_adapters({f"ckpt-{step}": folder for step, folder in chosen.items()}, config, show_progress)
    return {step: samples[f"ckpt-{step}"] for step in chosen}


def resolve_adapter(path: str | Path) -> Path:
    """An adapter folder, given itself or a run folder holding adapter/."""
    folder = Path(path).expanduser()
    if not (folder / "adapter_config.json").is_file() and (folder / "adapter" / "adapter_config.json").is_file():
        folder = folder / "adapter"
    if not (folder / "adapter_config.json").is_file() or not (folder / ADAPTER_FILE).is_file():
        raise EmkitError(f"{path} holds no peft adapter (adapter_config.json and {ADAPTER_FILE})",
                         fix="point to a LoRA run folder or an adapter folder")
    return folder


def write_scaled_adapter(adapter: str | Path, factor: float, output: Path) -> Path:
    """Copy an adapter with every lora_B weight multiplied by ``factor`` (same as scaling its scalars)."""
    source = resolve_adapter(adapter)
    weights = load_file(source / ADAPTER_FILE)
    scaled = {key: tensor * factor if ".lora_B." in key else tensor for key, tensor in weights.items()}
    output.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "adapter_config.json", output / "adapter_config.json")
    save_file(scaled, output / ADAPTER_FILE)
    return output


def sample_scaled(adapter: str | Path, factors: Sequence[float], config: SampleConfig, scratch: Path | None = None,
                  show_progress: bool = False) -> dict[float, list[SampleRecord]]:
    """Sample with the adapter's B vectors scaled by each factor, labelled ``scale-F`` in the store.

    The scaled copies go to ``scratch`` (default: a scaled/ folder beside the adapter, inside the run);
    each factor is recorded as the samples' intervention, so stored answers never mix scales.
    """
    source = resolve_adapter(adapter)
    scratch = scratch or source.parent / "scaled"
    folders = {f"scale-{factor:g}": write_scaled_adapter(source, factor, scratch / f"{source.name}-scale-{factor:g}")
               for factor in factors}
    interventions = {f"scale-{factor:g}": f"scale-lora-B={factor:g}" for factor in factors}
    samples = sample_adapters(folders, config, show_progress, interventions)
    return {factor: samples[f"scale-{factor:g}"] for factor in factors}


def sample_adapters(folders: Mapping[str, Path], config: SampleConfig, show_progress: bool = False,
                    interventions: Mapping[str, str] | None = None) -> dict[str, list[SampleRecord]]:
    """Sample once per adapter folder (label -> folder) with one loaded base model.

    ``interventions`` (label -> description) marks samples taken under a modified adapter.
    """
    if config.adapters:
        raise EmkitError("the sample config already names adapters; checkpoint sampling sets its own",
                         fix="leave adapters empty in the sample config")
    loaded: LoadedModel | None = None
    results = {}
    for label, folder in folders.items():
        if loaded is None:
            loaded = load_model(config.model, [str(folder)], config.device, config.dtype, config.trust_remote_code)
        else:
            swap_adapter_weights(loaded, folder)
        update = {"adapters": [str(folder)], "label": label}
        if interventions and label in interventions:
            update["intervention"] = interventions[label]
        stage = config.model_copy(update=update)
        results[label] = sample(stage, loaded=loaded, show_progress=show_progress)
    return results


def swap_adapter_weights(loaded: LoadedModel, folder: Path) -> None:
    """Load another checkpoint of the same adapter into the model in place (no reload of the base model)."""
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(loaded.model, load_file(folder / ADAPTER_FILE), adapter_name="adapter0")
    if result.unexpected_keys:
        raise EmkitError(f"adapter in {folder} does not match the first one ({result.unexpected_keys[0]})",
                         fix="sample checkpoints of one run at a time")
