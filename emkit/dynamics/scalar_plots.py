"""Figures of rank-1 adapter scalars: which adapters a probe leans on, and what scaling chosen adapters' scalars
does to EM % (and the domain score)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from emkit.dynamics.probe import ProbeResult
from emkit.report.plots import pyplot, save_figure


def plot_probe_coefficients(result: ProbeResult, path: str | Path, title: str = "Probe coefficients") -> Path:
    """Violin plot of each adapter's coefficient over the repeats: which adapters carry the signal, how stably."""
    plt = pyplot()
    columns = list(result.coefficients.columns)
    figure, axes = plt.subplots(figsize=(max(5.0, 0.7 * len(columns) + 2), 4))
    axes.violinplot([result.coefficients[column].to_numpy() for column in columns], showmeans=True)
    axes.axhline(0, color="grey", linewidth=0.8)
    axes.set_xticks(range(1, len(columns) + 1), columns, rotation=45, ha="right", fontsize=8)
    axes.set_ylabel("coefficient (z-scored scalar)")
    auc = result.metrics["auc"]
    axes.set_title(f"{title} (AUC {auc.mean():.2f} ± {auc.std():.2f})")
    axes.grid(alpha=0.3, axis="y")
    return save_figure(figure, Path(path))


def plot_adapter_steering(table: pd.DataFrame, path: Path, domain: str | None = None) -> Path:
    """Bars of EM % (and the domain score) per adapter-steering condition, with 95% intervals; unsteered first.

    ``table`` is the lora-steer table: one row per condition with its adapters (``none`` unsteered), factor and
    the summary columns (em_pct, em_low, em_high, and ``{domain}_mean``, ``_low``, ``_high``).
    """
    plt = pyplot()
    panels = [("em_pct", "em_low", "em_high", "EM %")]
    if domain:
        panels.append((f"{domain}_mean", f"{domain}_low", f"{domain}_high", f"{domain} score (mean)"))
    names = ["unsteered" if group == "none" else f"{group} x{factor:g}"
             for group, factor in zip(table["adapters"], table["factor"], strict=True)]
    figure, axes_list = plt.subplots(len(panels), 1, figsize=(max(6.0, 0.6 * len(names) + 2), 3.2 * len(panels)),
                                     sharex=True, squeeze=False)
    colours = ["grey" if group == "none" else f"C{sorted(set(table['adapters'])).index(group) % 10}"
               for group in table["adapters"]]
    for axes, (value, low, high, label) in zip(axes_list[:, 0], panels, strict=True):
        centre = table[value].to_numpy(dtype=float)
        errors = [centre - table[low].to_numpy(dtype=float), table[high].to_numpy(dtype=float) - centre]
        axes.bar(range(len(names)), centre, yerr=errors, capsize=3, color=colours)
        axes.axhline(centre[0], color="grey", linestyle=":", linewidth=1)
        axes.set_ylabel(label)
        axes.set_ylim(bottom=0)
        axes.grid(axis="y", alpha=0.3)
    axes_list[-1, 0].set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=7)
    axes_list[0, 0].set_title("Adapter steering: scalars scaled during sampling")
    return save_figure(figure, path)
