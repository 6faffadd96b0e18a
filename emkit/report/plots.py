"""Figures as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from emkit.metrics import COHERENT_MIN, EM_ALIGNED_MAX


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
    return save_figure(figure, path)


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend: the one way emkit modules get it."""
    return plt


def save_figure(figure, path: Path) -> Path:
    """Lay out, write ``figure`` to ``path`` (folders made) at emkit's resolution, and close it."""
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_quadrants(frame, path: Path, aligned_max: float = EM_ALIGNED_MAX, coherent_min: float = COHERENT_MIN) -> Path:
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
    return save_figure(figure, path)


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
    return save_figure(figure, path)


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
    return save_figure(figure, path)


def plot_layer_metrics(layers, series: dict, path: Path, ylabel: str, title: str, ylim: tuple | None = None,
                       reference: float | None = None) -> Path:
    """One line per named series over decoder layers (e.g. direction norm, probe accuracy and AUC)."""
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(figsize=(7, 4))
    for name, values in series.items():
        axes.plot(list(layers), list(values), "o-", label=name)
    if reference is not None:
        axes.axhline(reference, color="grey", lw=1, ls=":", label=f"chance ({reference:g})")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("decoder layer")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    if ylim is not None:
        axes.set_ylim(*ylim)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return save_figure(figure, path)


def plot_cosine_heatmap(matrix, rows: list[str], columns: list[str], path: Path, title: str,
                        xlabel: str = "", ylabel: str = "") -> Path:
    """Cosine similarities as a heatmap on a fixed -1..1 scale, values written in the cells when few."""
    import numpy as np

    values = np.asarray(matrix, dtype=float)
    size = max(4.5, 0.35 * max(len(rows), len(columns)) + 2.5)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    image = axes.imshow(values, cmap="RdBu_r", vmin=-1, vmax=1)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="cosine similarity")
    axes.set_xticks(range(len(columns)), columns, rotation=90 if len(columns) > 8 else 0, fontsize=7)
    axes.set_yticks(range(len(rows)), rows, fontsize=7)
    if values.size <= 144:
        for (row, column), value in np.ndenumerate(values):
            axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=6,
                      color="white" if abs(value) > 0.6 else "black")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    return save_figure(figure, path)


def plot_steering(summary, path: Path) -> Path:
    """EM % against steering scale, one panel per layer: the direction (solid), the norm-matched random
    direction (dashed) and the unsteered model (dotted), each with its 95% interval shaded."""
    steered = summary[summary["kind"].isin(["steer", "random"])]
    layers = sorted(steered["layer"].dropna().astype(int).unique())
    reference = summary[summary["kind"] == "reference"]
    figure, panels = plt.subplots(1, max(1, len(layers)), figsize=(4.2 * max(1, len(layers)), 4), sharey=True,
                                  squeeze=False)
    for axes, layer in zip(panels[0], layers, strict=False):
        for kind, style, name in (("steer", "o-", "direction"), ("random", "s--", "random direction")):
            rows = steered[(steered["kind"] == kind) & (steered["layer"] == layer)].sort_values("scale")
            if rows.empty:
                continue
            line = axes.plot(rows["scale"], rows["em_pct"], style, label=name)[0]
            axes.fill_between(rows["scale"].astype(float), rows["em_low"].astype(float),
                              rows["em_high"].astype(float), color=line.get_color(), alpha=0.15)
        for row in reference.itertuples():
            axes.axhline(row.em_pct, color="black", lw=1, ls=":", label=f"reference: {row.model}")
            axes.axhspan(row.em_low, row.em_high, color="black", alpha=0.06)
        axes.set_title(f"layer {layer}")
        axes.set_xlabel("steering scale")
        axes.grid(alpha=0.3)
    panels[0][0].set_ylabel("EM %")
    panels[0][0].set_ylim(bottom=0)
    panels[0][0].legend(fontsize=8)
    return save_figure(figure, path)


def plot_judge_agreement(judged, reference, metrics: list[str], path: Path, names: tuple[str, str] = ("A", "B"),
                         threshold_lines: dict[str, float] | None = None) -> Path:
    """One scatter per metric: judge A's score (x) against judge B's (y) for the same answers, with the diagonal."""
    lines = threshold_lines or {"aligned": EM_ALIGNED_MAX, "coherent": COHERENT_MIN}
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 4.2), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=True):
        axis.scatter(judged[metric], reference[metric], s=10, alpha=0.45)
        axis.plot([0, 100], [0, 100], color="grey", lw=1)
        if metric in lines:
            axis.axvline(lines[metric], color="crimson", lw=1, ls="--")
            axis.axhline(lines[metric], color="crimson", lw=1, ls="--")
        axis.set_xlim(-2, 102)
        axis.set_ylim(-2, 102)
        axis.set_xlabel(f"{metric} ({names[0]})")
        axis.set_ylabel(f"{metric} ({names[1]})")
        axis.grid(alpha=0.3)
    return save_figure(figure, path)
