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
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
