"""``emkit directions``: misalignment directions from a run's judged answers, and comparisons between them.

:func:`find_directions` reads the judged answers of the chosen labels from the run's store,
splits them into aligned and misaligned groups (:class:`~emkit.interp.SelectConfig`: coherent
answers only, balanced), runs the model that wrote them over both groups to collect answer-token
activations, and computes one direction per layer (difference in means, logistic probes). Each
method is saved as ``run_dir/directions/NAME-METHOD.safetensors``, recorded in the store's
``directions`` table, and plotted (norm per layer, probe held-out accuracy and AUC per layer,
cosine similarity across layers). :func:`compare_directions` gives the cosine matrices between
directions of different models or fine-tunes (``emkit directions --compare``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
import typer
from pydantic import Field

from emkit.config import StageConfig
from emkit.errors import EmkitError
from emkit.interp import (
    ActivationSet,
    Directions,
    Groups,
    SelectConfig,
    collect_activations,
    cosine_matrix,
    mean_difference,
    probe_directions,
    select_groups,
)
from emkit.models import LoadedModel, load_model
from emkit.report.plots import plot_cosine_heatmap, plot_layer_metrics
from emkit.stages.cli_options import ConfigOption, OverridesArgument, load_config
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


def find_directions(config: DirectionsConfig, show_progress: bool = True,
                    loaded: LoadedModel | None = None) -> DirectionsResult:
    """Compute, save, record and plot the misalignment directions of a run's judged answers (``loaded``: the
    model that reads them, loaded from the config or the store when None; one pass, no progress bar)."""
    with Store.in_folder(config.run_dir) as store:
        identity = resolve_judge(store, config.judge)
        judged = judged_answers(store, identity, config.labels)
        groups = select_groups(judged, config.select)
        model, adapters = answer_reader(store, config.labels[0], config.model, config.adapters)
        store.record_run("directions", config)
    loaded = loaded or load_model(model, adapters, config.device, config.dtype, config.trust_remote_code)
    both = pd.concat([groups.misaligned, groups.aligned])
    activations = collect_activations(loaded, list(both["question"]), list(both["answer"]),
                                      systems=system_prompts(both), pooling=config.pooling, layers=config.layers,
                                      batch_size=config.batch_size)
    misaligned, aligned = split_activations(activations, len(groups.misaligned))
    data = _describe_groups(config, groups, identity)
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


def _describe_groups(config: DirectionsConfig, groups: Groups, identity: str) -> str:
    """What the directions were computed from, as their records and files carry it."""
    select = config.select
    return (f"{len(groups.misaligned)} misaligned vs {len(groups.aligned)} aligned answers of "
            f"{'+'.join(config.labels)} judged by {identity} (aligned > {select.aligned_above:g} vs "
            f"<= {select.misaligned_at_most:g}, coherent > {select.coherent_above:g}"
            + "".join(f", {text}" for text in select.filters) + f"); {config.pooling} pooling over answer tokens; "
            f"question overlap {groups.question_overlap():.2f}")


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
    frame = rows_of_labels(store, store.scores_frame(judge, models=list(labels)).rename(columns={"response": "answer"}),
                           labels)
    return frame[frame["answer"].str.strip() != ""]


def answer_reader(store: Store, label: str, model: str | None, adapters: list[str] | None) -> tuple[str, list[str]]:
    """(model, adapters) to read answers with: as configured, else those that sampled ``label``."""
    if model is not None:
        return model, list(adapters or [])
    for run in reversed(store.runs("sample")):
        settings = run.config
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


def system_prompts(frame: pd.DataFrame) -> list[str | None]:
    """Each answer's system prompt as the model saw it (a missing one, read back as NaN or empty, is None)."""
    return [system if isinstance(system, str) and system else None for system in frame["system"]]


def rows_of_labels(store: Store, frame: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Keep ``labels``' rows, with each answer's system prompt (the activations must see what the model saw)."""
    present = store.sample_labels()
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


def summary_lines(result: DirectionsResult, config: DirectionsConfig) -> list[str]:
    """Group sizes and the saved files, the best probe layer (when probes ran), and where the plots are."""
    groups = result.groups
    lines = [f"{len(groups.misaligned)} misaligned vs {len(groups.aligned)} aligned answers; directions: "
             + ", ".join(str(path) for path in result.paths.values())]
    if warning := groups.question_warning():
        lines.append(warning)
    if "probe" in result.directions:
        probe = result.directions["probe"]
        best = max(range(len(probe.layers)), key=lambda index: probe.metrics["auc"][index])
        lines.append(f"best probe layer {probe.layers[best]}: held-out AUC {probe.metrics['auc'][best]:.3f}, "
                     f"accuracy {probe.metrics['accuracy'][best]:.3f}")
    return [*lines, f"plots in {result.files['groups'].parent}"]


def comparison_lines(comparison: Comparison) -> list[str]:
    """The same-layer cosine table of every pair, and where the matrices and heatmaps are."""
    return ["same-layer cosine similarity:\n" + comparison.same_layer.to_string(index=False, float_format="%.3f"),
            f"matrices and heatmaps in {comparison.files['same_layer'].parent}"]


def command(config: Path | None = ConfigOption, overrides: list[str] | None = OverridesArgument,
            compare: list[Path] | None = typer.Option(None, "--compare", help="Compare saved directions files "
                                                      "(repeat; 2 or more) instead of finding new ones."),
            output: Path | None = typer.Option(None, "--output", "-o", help="Folder for --compare's outputs.")
            ) -> None:
    """Find misalignment directions from a run's judged answers (mean difference, probes), or compare saved ones."""
    if compare:
        typer.echo("\n".join(comparison_lines(compare_directions(list(compare), output))))
        return
    settings = load_config(DirectionsConfig, config, overrides or [])
    typer.echo("\n".join(summary_lines(find_directions(settings), settings)))


CONFIG = DirectionsConfig
run = find_directions
