"""Figures as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_loss_curve(histories: dict[str, list[dict]], path: Path) -> Path:
    """Training loss per optimizer step (and eval loss where recorded), one line per run."""
    figure, axes = plt.subplots(figsize=(7, 4))
    for label, history in histories.items():
        steps = [record["step"] for record in history]
        axes.plot(steps, [record["loss"] for record in history], label=f"{label} train", alpha=0.85)
        evaluated = [record for record in history if "eval_loss" in record]
        if evaluated:
            axes.plot([r["step"] for r in evaluated], [r["eval_loss"] for r in evaluated], "o--",
                      label=f"{label} eval")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss (assistant tokens)")
    axes.set_title("Training loss")
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_quadrants(frame, path: Path, aligned_max: float = 30, coherent_min: float = 50) -> Path:
    """Aligned vs coherent scatter, one colour per model, with the EM lines (aligned 30, coherent 50)."""
    figure, axes = plt.subplots(figsize=(6.5, 5.5))
    for model, group in frame.groupby("model", sort=True):
        axes.scatter(group["coherent"], group["aligned"], s=14, alpha=0.55, label=str(model))
    axes.axhline(aligned_max, color="crimson", lw=1, ls="--")
    axes.axvline(coherent_min, color="crimson", lw=1, ls="--")
    axes.text(coherent_min + 2, 2, "EM: misaligned and coherent", color="crimson", fontsize=8)
    axes.set_xlim(-2, 102)
    axes.set_ylim(-2, 102)
    axes.set_xlabel("coherent")
    axes.set_ylabel("aligned")
    axes.set_title("Judged answers")
    axes.legend(fontsize=8, markerscale=1.5)
    axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_grouped_bars(summary, path: Path, category: str, value: str = "em", title: str = "EM % per question",
                      ylabel: str = "EM %") -> Path:
    """Bars of ``{value}_pct`` per ``category`` (e.g. question_id), one bar per model, with interval whiskers."""
    categories = list(dict.fromkeys(summary[category]))
    models = list(dict.fromkeys(summary["model"]))
    width = 0.8 / max(1, len(models))
    figure, axes = plt.subplots(figsize=(max(6.0, 0.9 * len(categories) * max(1, len(models)) ** 0.5), 4.5))
    for offset, model in enumerate(models):
        rows = summary[summary["model"] == model].set_index(category).reindex(categories)
        centre = rows[f"{value}_pct"].to_numpy(dtype=float)
        errors = [centre - rows[f"{value}_low"].to_numpy(dtype=float),
                  rows[f"{value}_high"].to_numpy(dtype=float) - centre]
        positions = [index + (offset - (len(models) - 1) / 2) * width for index in range(len(categories))]
        axes.bar(positions, centre, width, yerr=errors, capsize=3, label=str(model))
    axes.set_xticks(range(len(categories)), [str(c) for c in categories], rotation=30, ha="right", fontsize=8)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def plot_model_comparison(summary, path: Path) -> Path:
    """EM % and coherent % per model side by side, with 95% intervals."""
    figure, panels = plt.subplots(1, 2, figsize=(9, 4))
    models = [str(model) for model in summary["model"]]
    for axes, (value, label) in zip(panels, (("em", "EM %"), ("coherent", "coherent %")), strict=True):
        centre = summary[f"{value}_pct"].to_numpy(dtype=float)
        errors = [centre - summary[f"{value}_low"].to_numpy(dtype=float),
                  summary[f"{value}_high"].to_numpy(dtype=float) - centre]
        axes.bar(models, centre, yerr=errors, capsize=4, color=[f"C{i}" for i in range(len(models))])
        axes.set_ylabel(label)
        axes.set_title(label)
        axes.set_ylim(bottom=0)
        axes.grid(axis="y", alpha=0.3)
        axes.tick_params(axis="x", rotation=20)
    return _save(figure, path)
