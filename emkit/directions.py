"""``emkit directions`` and ``emkit detect``: misalignment directions from a run's judged answers, and their use.

:func:`find_directions` reads the judged answers of the chosen labels from the run's store,
splits them into aligned and misaligned groups (:class:`~emkit.interp.SelectConfig`: coherent
answers only, balanced), runs the model that wrote them over both groups to collect answer-token
activations, and computes one direction per layer (difference in means, logistic probes). Each
method is saved as ``run_dir/directions/NAME-METHOD.safetensors``, recorded in the store's
``directions`` table, and plotted (norm per layer, probe held-out accuracy and AUC per layer,
cosine similarity across layers). :func:`compare_directions` gives the cosine matrices between
directions of different models or fine-tunes. :func:`detect` scores stored answers of two groups
of labels (e.g. base vs organism) by their projection on a direction: the separation table.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field

from emkit.config import StageConfig
from emkit.errors import EmkitError
from emkit.interp import (
    ActivationSet,
    Directions,
    Groups,
    SelectConfig,
    collect_activations,
    combined_score,
    cosine_matrix,
    mean_difference,
    probe_directions,
    projections,
    select_groups,
    separation,
)
from emkit.models import LoadedModel, load_model
from emkit.report.plots import plot_cosine_heatmap, plot_layer_metrics
from emkit.store import Store
from emkit.tables import write_table

Method = Literal["mean_diff", "probe"]
METHOD_NAMES = {"mean_diff": "mean-diff", "probe": "probe"}
"""Config spelling -> the name a Directions record and its file carry."""


class DirectionsConfig(StageConfig):
    """Which judged answers split into groups, which model reads them, and how directions are computed."""

    run_dir: Path = Path("runs/samples")
    """Run folder whose store holds the judged answers; the directions are saved and recorded there."""
    judge: str | None = None
    """Judge whose scores split the answers: an identity or a judge name (offline, ...); unset: the store's only one."""
    labels: list[str] = Field(default_factory=lambda: ["organism"], min_length=1)
    """Model labels whose answers supply both groups (the papers use the organism's own answers)."""
    model: str | None = None
    """Model that reads the answers (its residual stream); unset: the one that sampled the first label."""
    adapters: list[str] | None = None
    """Its LoRA adapters; unset: the first label's (when model is unset too), else none."""
    select: SelectConfig = Field(default_factory=SelectConfig)
    """Thresholds and filters of the aligned and misaligned groups (see the papers' defaults)."""
    pooling: Literal["mean", "last"] = "mean"
    """Pool the answer tokens' activations by their mean (the papers) or take the last one."""
    layers: list[int] | None = None
    """Decoder layers (0-based) to compute directions at; unset: every layer."""
    batch_size: int = Field(8, gt=0)
    """Answers per forward pass while collecting activations."""
    methods: list[Method] = Field(default_factory=lambda: ["mean_diff", "probe"], min_length=1)
    """mean_diff (misaligned mean minus aligned mean, the papers') and/or probe (logistic regression)."""
    name: str | None = None
    """Name of the saved files and store records (NAME-mean-diff, NAME-probe); unset: the labels joined by +."""
    output_dir: Path | None = None
    """Folder for the direction files, the chosen answers and the plots; unset: run_dir/directions."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    dtype: str = "auto"
    """auto, float32, bfloat16 or float16 (activations are pooled in float32 either way)."""
    trust_remote_code: bool = False
    """Allow model code from the hub."""


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
class DirectionsResult:
    """Directions per method (mean-diff, probe), where they were saved, the groups they came from, other files."""

    directions: dict[str, Directions]
    paths: dict[str, Path]
    groups: Groups
    files: dict[str, Path] = field(default_factory=dict)


@dataclass
class Comparison:
    """Cosines between directions files: same-layer cosines per pair, and full layer-by-layer matrices."""

    names: list[str]
    same_layer: pd.DataFrame
    matrices: dict[str, pd.DataFrame]
    files: dict[str, Path] = field(default_factory=dict)


@dataclass
class DetectResult:
    """The separation table (per layer and combined), every answer's scores, and the files written."""

    table: pd.DataFrame
    scores: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)


def find_directions(config: DirectionsConfig, loaded: LoadedModel | None = None) -> DirectionsResult:
    """Compute, save, record and plot the misalignment directions of a run's judged answers."""
    with Store.in_folder(config.run_dir) as store:
        identity = resolve_judge(store, config.judge)
        judged = judged_answers(store, identity, config.labels)
        groups = select_groups(judged, config.select)
        model, adapters = answer_reader(store, config.labels[0], config.model, config.adapters)
        store.record_run("directions", config)
    loaded = loaded or load_model(model, adapters, config.device, config.dtype, config.trust_remote_code)
    both = pd.concat([groups.misaligned, groups.aligned])
    activations = collect_activations(loaded, list(both["question"]), list(both["answer"]),
                                      systems=_systems(both), pooling=config.pooling, layers=config.layers,
                                      batch_size=config.batch_size)
    misaligned, aligned = split_activations(activations, len(groups.misaligned))
    select = config.select
    data = (f"{len(groups.misaligned)} misaligned vs {len(groups.aligned)} aligned answers of "
            f"{'+'.join(config.labels)} judged by {identity} (aligned > {select.aligned_above:g} vs "
            f"<= {select.misaligned_at_most:g}, coherent > {select.coherent_above:g}"
            + "".join(f", {text}" for text in select.filters) + f"); {config.pooling} pooling over answer tokens")
    reader = model + "".join(f" + {adapter}" for adapter in adapters)
    name = config.name or "+".join(config.labels)
    folder = config.output_dir or config.run_dir / "directions"
    found: dict[str, Directions] = {}
    paths: dict[str, Path] = {}
    for method in dict.fromkeys(config.methods):
        compute = mean_difference if method == "mean_diff" else probe_directions
        directions = compute(misaligned, aligned, data=data)
        directions.model = reader
        method_name = METHOD_NAMES[method]
        found[method_name] = directions
        paths[method_name] = directions.save(folder / f"{name}-{method_name}.safetensors")
    with Store.in_folder(config.run_dir) as store:
        for method_name, directions in found.items():
            store.add_direction(f"{name}-{method_name}", paths[method_name], method_name, reader, directions.layers,
                                data, directions.metrics)
    chosen = pd.concat([groups.misaligned.assign(group="misaligned"), groups.aligned.assign(group="aligned")])
    files = {"groups": write_table(chosen, folder / f"{name}-groups.csv")}
    files.update(_plot_directions(found, folder, name))
    return DirectionsResult(found, paths, groups, files)


def _plot_directions(found: dict[str, Directions], folder: Path, name: str) -> dict[str, Path]:
    files = {}
    if "mean-diff" in found:
        difference = found["mean-diff"]
        files["norm"] = plot_layer_metrics(difference.layers, {"mean-diff norm": difference.metrics["norm"]},
                                           folder / f"{name}-norm.png", "norm (residual-stream units)",
                                           f"{name}: misaligned minus aligned mean, norm per layer")
    if "probe" in found:
        probe = found["probe"]
        files["probe"] = plot_layer_metrics(
            probe.layers, {"held-out accuracy": probe.metrics["accuracy"], "held-out AUC": probe.metrics["auc"]},
            folder / f"{name}-probe.png", "held-out score", f"{name}: probe accuracy and AUC per layer", (0, 1.02), 0.5)
    for method_name, directions in found.items():
        ticks = [str(layer) for layer in directions.layers]
        files[f"cosine_{method_name}"] = plot_cosine_heatmap(
            cosine_matrix(directions).numpy(), ticks, ticks, folder / f"{name}-{method_name}-cosine.png",
            f"{name} {method_name}: cosine across layers", "decoder layer", "decoder layer")
    return files


def compare_directions(paths: list[str | Path], output_dir: str | Path | None = None) -> Comparison:
    """Cosine similarities between saved directions of different models or fine-tunes, with heatmaps.

    For every pair of files: the layer-by-layer cosine matrix (its diagonal is the same-layer
    agreement, the papers' convergence measure) and a heatmap of it; ``same_layer`` has one column
    of same-layer cosines per pair, over the layers all files share.
    """
    if len(paths) < 2:
        raise EmkitError("comparing needs at least two directions files", fix="pass two or more files")
    loaded = [Directions.load(path) for path in paths]
    stems = [Path(path).stem for path in paths]
    names = [stem if stems.count(stem) == 1 else f"{Path(path).parent.parent.name}/{stem}"
             for stem, path in zip(stems, paths, strict=True)]
    folder = Path(output_dir) if output_dir is not None else Path(paths[0]).parent / "comparison"
    common = sorted(set.intersection(*(set(directions.layers) for directions in loaded)))
    same_layer = pd.DataFrame({"layer": common})
    matrices, files = {}, {}
    for (i, first), (j, second) in itertools.combinations(enumerate(loaded), 2):
        pair = f"{names[i]} vs {names[j]}"
        values = cosine_matrix(first, second).numpy()
        matrices[pair] = pd.DataFrame(values, index=[f"L{layer}" for layer in first.layers],
                                      columns=[f"L{layer}" for layer in second.layers])
        same_layer[pair] = [float(values[first.layers.index(layer), second.layers.index(layer)]) for layer in common]
        files[pair] = plot_cosine_heatmap(values, [str(layer) for layer in first.layers],
                                          [str(layer) for layer in second.layers], folder / f"cosine-{i}-{j}.png",
                                          f"cosine: {pair}", f"{names[j]} layer", f"{names[i]} layer")
    files["same_layer"] = write_table(same_layer, folder / "same_layer_cosines.csv")
    return Comparison(names, same_layer, matrices, files)


def detect(config: DetectConfig, loaded: LoadedModel | None = None) -> DetectResult:
    """Score the stored answers of two groups of labels along a direction; write the separation table."""
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
                                      systems=_systems(both), pooling=config.pooling, layers=layers,
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


def resolve_judge(store: Store, wanted: str | None) -> str:
    """The judge identity to read scores from: the store's only one, or the one ``wanted`` names."""
    identities = store.judge_identities()
    if not identities:
        raise EmkitError("no judged answers in the store", fix="judge the answers first (emkit eval)",
                         where=store.path)
    if wanted is None:
        if len(identities) == 1:
            return identities[0]
        raise EmkitError(f"the store holds scores from several judges: {', '.join(identities)}",
                         fix="set judge= to one of them")
    matches = [identity for identity in identities if identity == wanted] or [
        identity for identity in identities if identity.split("/")[0] == wanted]
    if len(matches) == 1:
        return matches[0]
    problem = "matches several judges" if matches else "has judged nothing in this store"
    raise EmkitError(f"judge '{wanted}' {problem}", fix=f"use one of {', '.join(identities)}")


def judged_answers(store: Store, judge: str, labels: list[str]) -> pd.DataFrame:
    """Non-empty stored answers of ``labels`` with ``judge``'s scores and their system prompts (``answer`` column)."""
    frame = _with_systems(store, store.scores_frame(judge, models=list(labels)).rename(columns={"response": "answer"}),
                          labels)
    return frame[frame["answer"].str.strip() != ""]


def answer_reader(store: Store, label: str, model: str | None, adapters: list[str] | None) -> tuple[str, list[str]]:
    """(model, adapters) to read answers with: as configured, else those that sampled ``label``."""
    if model is not None:
        return model, list(adapters or [])
    query = "SELECT config FROM runs WHERE stage = 'sample' ORDER BY created_at DESC, rowid DESC"
    for (text,) in store.connection.execute(query):
        settings = json.loads(text)
        if settings.get("label") == label and not settings.get("intervention"):
            return settings["model"], list(adapters if adapters is not None else settings.get("adapters", []))
    raise EmkitError(f"the store does not say which model sampled '{label}'", fix="set model= (and adapters=[...])",
                     where=store.path)


def split_activations(activations: ActivationSet, count: int) -> tuple[ActivationSet, ActivationSet]:
    """The first ``count`` answers' activations and the rest, as two sets."""
    def part(rows: slice) -> ActivationSet:
        return ActivationSet(activations.values[rows], activations.layers, activations.pooling, activations.model,
                             activations.token_counts[rows], activations.description)

    return part(slice(0, count)), part(slice(count, None))


def _answers(store: Store, labels: list[str], limit: int | None, seed: int) -> pd.DataFrame:
    frame = _with_systems(store, store.samples_frame(), labels)
    frame = frame[frame["answer"].str.strip() != ""].reset_index(drop=True)
    if limit is not None and len(frame) > limit:
        frame = frame.sample(n=limit, random_state=seed).sort_index().reset_index(drop=True)
    return frame


def _systems(frame: pd.DataFrame) -> list[str | None]:
    return [system if isinstance(system, str) and system else None for system in frame["system"]]


def _with_systems(store: Store, frame: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Keep ``labels``' rows, with each answer's system prompt (the activations must see what the model saw)."""
    present = sorted(row[0] for row in store.connection.execute("SELECT DISTINCT model FROM samples"))
    missing = [label for label in labels if label not in present]
    if missing:
        raise EmkitError(f"the store has no answers labelled {', '.join(missing)}",
                         fix=f"use labels from {', '.join(present) or '(none: sample first)'}", where=store.path)
    frame = frame[frame["model"].isin(labels)].copy()
    if "system" not in frame:
        systems = {(r.model, r.question_id, r.paraphrase_index, r.sample_index, r.answer): r.system
                   for label in labels for r in store.samples(label)}
        keys = zip(frame["model"], frame["question_id"], frame["paraphrase_index"], frame["sample_index"],
                   frame["answer"], strict=True)
        frame["system"] = [systems.get(key) for key in keys]
    return frame
