"""The phase analysis's figures: norms, PCA trajectory, local cosine, similarity to final, the behaviour beside the
mechanism, and EM % under B-vector scaling; each marks the transition where one was claimed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch

from emkit.dynamics.phase import PhaseReport, Transition
from emkit.report.plots import pyplot, save_figure

Behaviour = Mapping[int, float | tuple[float, float, float]]
"""EM % (or any behavioural value) per step: a value, or (value, low, high) for an interval."""


def plot_phase(report: PhaseReport, folder: Path) -> dict[str, Path]:
    """The four mechanistic figures of ``report`` in ``folder``, by name (norms, pca, local_cosine,
    similarity_to_final)."""
    return {
        "norms": plot_norms(report.steps, report.norms, folder / "norms.png"),
        "pca": plot_pca_trajectory(report.steps, report.pca, folder / "pca.png", report.explained_variance,
                                   report.transition),
        "local_cosine": plot_local_cosine(report.steps, report.local_cosine, folder / "local_cosine.png",
                                          report.transition),
        "similarity_to_final": plot_similarity_to_final(report.steps, report.similarity_to_final,
                                                        folder / "similarity_to_final.png", report.transition),
    }


def _mark(axes, transition: Transition | None) -> None:
    if transition is not None:
        axes.axvline(transition.step, color="crimson", linestyle="--", alpha=0.8,
                     label=f"transition (step {transition.step})")


def plot_norms(steps: Sequence[int], curves: Mapping[str, torch.Tensor], path: Path) -> Path:
    """Norm of each adapter's vector per step: the growth phase, and where learning ignites."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4))
    for name, values in curves.items():
        axes.plot(steps, values.tolist(), label=name, linewidth=2.2 if name == "all" else 1.2)
    axes.set_xlabel("training step")
    axes.set_ylabel("vector norm")
    axes.set_title("Adapter vector norms")
    axes.grid(alpha=0.3)
    if len(curves) <= 12:
        axes.legend(fontsize=7)
    return save_figure(figure, Path(path))


def plot_pca_trajectory(steps: Sequence[int], coords: torch.Tensor, path: Path,
                        explained: Sequence[float] | None = None, transition: Transition | None = None) -> Path:
    """The trajectory in its top-2 PCA plane, coloured by step, with the transition step circled."""
    plt = pyplot()
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
    return save_figure(figure, Path(path))


def plot_local_cosine(steps: Sequence[int], curves: Mapping[int, torch.Tensor], path: Path,
                      transition: Transition | None = None) -> Path:
    """Local cosine similarity per k: +1 on straight stretches, a dip where the trajectory turns."""
    plt = pyplot()
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
    return save_figure(figure, Path(path))


def plot_similarity_to_final(steps: Sequence[int], similarity: torch.Tensor, path: Path,
                             transition: Transition | None = None) -> Path:
    """Cosine similarity of each checkpoint to the final vector: when the final direction is reached."""
    plt = pyplot()
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
    return save_figure(figure, Path(path))


def plot_mechanism_vs_behaviour(steps: Sequence[int], mechanism: Sequence[float] | torch.Tensor,
                                behaviour: Behaviour, path: Path, mechanism_label: str = "local cosine",
                                behaviour_label: str = "EM %", transition: Transition | None = None) -> Path:
    """A mechanistic curve over a behavioural one on a shared step axis, to see whether they change together.

    ``behaviour`` maps a step to a value, or to (value, low, high) for an interval.
    """
    plt = pyplot()
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
    return save_figure(figure, Path(path))


def plot_scaling(scaling: pd.DataFrame, path: Path) -> Path:
    """EM % and coherent % against the B-vector scale factor, with 95% intervals."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4))
    for name, label, colour in (("em", "EM %", "tab:red"), ("coherent", "coherent %", "tab:blue")):
        axes.plot(scaling["factor"], scaling[f"{name}_pct"], marker="o", color=colour, label=label)
        axes.fill_between(scaling["factor"], scaling[f"{name}_low"], scaling[f"{name}_high"], color=colour,
                          alpha=0.15)
    axes.axvline(1.0, color="grey", linestyle=":", label="trained adapter (x1)")
    axes.set_xlabel("B-vector scale factor")
    axes.set_ylabel("% of scored answers")
    axes.set_ylim(-2, 102)
    axes.set_title("Behaviour under B-vector scaling")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return save_figure(figure, path)
