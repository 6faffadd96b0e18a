"""``emkit detect``: score stored answers of two groups of labels (e.g. base vs organism) by their projection on
a saved direction, layer by layer and combined: the separation table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field

from emkit.config import StageConfig
from emkit.interp import Directions, collect_activations, combined_score, projections, separation
from emkit.models import LoadedModel, load_model
from emkit.stages.directions import answer_reader, rows_of_labels, split_activations, system_prompts
from emkit.store import Store
from emkit.tables import write_table


class DetectConfig(StageConfig):
    """Which stored answers are scored along which direction, and by which model."""

    directions: Path
    """Saved directions file (from `emkit directions`)."""
    run_dir: Path = Path("runs/samples")
    """Run folder whose store holds the answers."""
    base_labels: list[str] = Field(default_factory=lambda: ["base"], min_length=1)
    """Labels of the group expected to score low (e.g. the base model, a control)."""
    organism_labels: list[str] = Field(default_factory=lambda: ["organism"], min_length=1)
    """Labels of the group expected to score high (e.g. the organism)."""
    layers: list[int] | None = None
    """Layers to score at (each with its own direction); unset: every layer of the directions file."""
    model: str | None = None
    """Model that reads the answers; unset: the one that sampled the first organism label."""
    adapters: list[str] | None = None
    """Its LoRA adapters; unset: the first organism label's (when model is unset too), else none."""
    pooling: Literal["mean", "last"] = "mean"
    """Pooling over answer tokens; use the one the directions were computed with."""
    batch_size: int = Field(8, gt=0)
    """Answers per forward pass."""
    max_per_group: int | None = Field(None, gt=0)
    """Score at most this many answers per group (seeded sample); unset: all."""
    seed: int = 0
    """Seed of that sample."""
    output_dir: Path | None = None
    """Folder for the tables; unset: run_dir/detect/<directions file name>."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    dtype: str = "auto"
    """auto, float32, bfloat16 or float16."""
    trust_remote_code: bool = False
    """Allow model code from the hub."""


@dataclass
class DetectResult:
    """The separation table (per layer and combined), every answer's scores, and the files written."""

    table: pd.DataFrame
    scores: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)


def detect(config: DetectConfig, show_progress: bool = True, loaded: LoadedModel | None = None) -> DetectResult:
    """Score the stored answers of two groups of labels along a direction; write the separation table (``loaded``:
    the model that reads them, loaded from the config or the store when None; one pass, no progress bar)."""
    directions = Directions.load(config.directions)
    layers = list(config.layers or directions.layers)
    for layer in layers:
        directions.at(layer)  # an unknown layer fails here, before any model is loaded
    with Store.in_folder(config.run_dir) as store:
        answers = {group: _answers(store, labels, config.max_per_group, config.seed)
                   for group, labels in (("base", config.base_labels), ("organism", config.organism_labels))}
        model, adapters = answer_reader(store, config.organism_labels[0], config.model, config.adapters)
        store.record_run("detect", config)
    loaded = loaded or load_model(model, adapters, config.device, config.dtype, config.trust_remote_code)
    both = pd.concat([answers["base"], answers["organism"]], ignore_index=True)
    activations = collect_activations(loaded, list(both["question"]), list(both["answer"]),
                                      systems=system_prompts(both), pooling=config.pooling, layers=layers,
                                      batch_size=config.batch_size)
    base, organism = split_activations(activations, len(answers["base"]))
    table = separation(base, organism, directions, layers)
    projected = projections(activations, directions, layers)
    scores = pd.concat([both[["model", "question_id", "paraphrase_index", "sample_index"]],
                        projected.assign(combined=combined_score(projected))], axis=1)
    scores.insert(0, "group", ["base"] * len(answers["base"]) + ["organism"] * len(answers["organism"]))
    folder = config.output_dir or config.run_dir / "detect" / Path(config.directions).stem
    files = {"separation": write_table(table, folder / "separation.csv"),
             "scores": write_table(scores, folder / "scores.csv")}
    return DetectResult(table, scores, files)


def _answers(store: Store, labels: list[str], limit: int | None, seed: int) -> pd.DataFrame:
    """Non-empty stored answers of ``labels`` with their system prompts, at most ``limit`` (a seeded sample)."""
    frame = rows_of_labels(store, store.samples_frame(), labels)
    frame = frame[frame["answer"].str.strip() != ""].reset_index(drop=True)
    if limit is not None and len(frame) > limit:
        frame = frame.sample(n=limit, random_state=seed).sort_index().reset_index(drop=True)
    return frame


def summary_lines(result: DetectResult, config: DetectConfig) -> list[str]:
    """The separation table, and where the tables are."""
    return [result.table.to_string(index=False, float_format="%.3f"),
            f"tables in {result.files['separation'].parent}"]


CONFIG = DetectConfig
run = detect
