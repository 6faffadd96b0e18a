"""``emkit steer`` and ``emkit ablate``: sample under an intervention, judge, and compare with its baselines.

Steering adds the direction at each (layer, scale) and compares EM % with a norm-matched random
direction pushed just as hard and with the unsteered model. Ablation projects the direction out
of the residual stream (activation space) and compares with a random direction projected out and
with the un-ablated model. Weight-space ablation instead writes a copy of a LoRA adapter that
cannot write along the direction (and one for a random direction), then evaluates both against
the original adapter; pointing it at another organism's adapter is the transfer experiment.
Every condition is a label in the run's store, so reruns resume and judgements are cached.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pydantic import Field

from emkit.directions import DirectionsConfig, find_directions
from emkit.errors import EmkitError
from emkit.evaluate import judge_records, summarise_scores
from emkit.generate import SampleConfig, sample
from emkit.interp import Directions, SelectConfig, ablate_adapter
from emkit.interp.sweep import (
    AblationSweepConfig,
    Condition,
    SteerSweepConfig,
    ablation_conditions,
    ablation_name,
    ablation_targets,
    applied_layers,
    fingerprint,
    run_conditions,
    steering_conditions,
)
from emkit.interp.weight_ablation import RECORD
from emkit.judges.base import Judge
from emkit.judges.run import JudgeConfig, make_judge
from emkit.judges.validity import Validity, judge_validity, write_validity
from emkit.metrics import CORE_METRICS
from emkit.models import LoadedModel, load_model
from emkit.questions import load_questions
from emkit.report.plots import plot_model_comparison, plot_steering
from emkit.store import SampleRecord, Store
from emkit.tables import write_table


class SteerConfig(SteerSweepConfig):
    """A steering sweep, judged: EM % per (layer, scale) against the random direction and the unsteered model."""

    reference: str | None = "unsteered"
    """Label of the unsteered answers (sampled if missing; an existing label, same settings, is reused); null: none."""
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    """Judge and metrics (see `emkit config judge`)."""
    bootstrap_samples: int = Field(1000, gt=0)
    """Bootstrap resamples behind each 95% interval."""
    output_dir: Path | None = None
    """Folder for the tables and plot; unset: sample.run_dir/steer/<directions file name>."""


class AblateConfig(AblationSweepConfig):
    """An ablation, judged: EM % with the direction removed, against a random direction and the model as is."""

    reference: str | None = "unablated"
    """Label of the un-ablated answers (sampled if missing; an existing label, same settings, is reused); null: none."""
    weights: bool = False
    """Ablate in weight space: write adapter copies that cannot write along the direction (and a random one)."""
    adapter: Path | None = None
    """Weight space: the adapter folder to ablate (another organism's = transfer); unset: sample.adapters' only one."""
    output_adapter: Path | None = None
    """Weight space: the ablated adapter's folder (random: beside it, -random); unset: run_dir/adapters/PREFIXNAME."""
    modules: list[str] = Field(default_factory=lambda: ["down_proj"], min_length=1)
    """Weight space: adapted modules whose B matrices are ablated (those that write into the residual stream)."""
    evaluate: bool = True
    """Weight space: sample and judge the adapters (false only writes them)."""
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    """Judge and metrics (see `emkit config judge`)."""
    bootstrap_samples: int = Field(1000, gt=0)
    """Bootstrap resamples behind each 95% interval."""
    output_dir: Path | None = None
    """Folder for the tables and plot; unset: sample.run_dir/ablate/<name>."""


@dataclass
class InterventionResult:
    """Judged answers of every condition, their summaries (one row per label, in condition order), the files."""

    scores: pd.DataFrame
    summary: pd.DataFrame
    per_question: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)
    validity: Validity | None = None
    """Which judge made the scores and its measured agreement on the closest validated distribution."""


def run_steering(config: SteerConfig, loaded: LoadedModel | None = None, directions: Directions | None = None,
                 judge: Judge | None = None, show_progress: bool = True) -> InterventionResult:
    """Sample (or resume) every steering condition and its baselines, judge them, write the table and plot."""
    directions = directions or _load_directions(config.directions)
    conditions = steering_conditions(config, directions)
    if config.reference:
        conditions.insert(0, _reference(config.sample, config.reference))
    with _judge(config.judge, judge) as scorer:
        answers = run_conditions(config, "steer", conditions, loaded, show_progress)
        result = _judged(answers, conditions, config.sample, config.judge, scorer, config.bootstrap_samples,
                         show_progress)
    folder = config.output_dir or config.sample.run_dir / "steer" / _stem(config.directions, directions)
    result.files.update(_write(result, folder))
    result.files["plot"] = plot_steering(result.summary, folder / "em_by_scale.png")
    return result


def run_ablation(config: AblateConfig, loaded: LoadedModel | None = None, directions: Directions | None = None,
                 judge: Judge | None = None, show_progress: bool = True) -> InterventionResult:
    """Ablate the direction (activation or weight space) and its random baseline, judge, write table and plot.

    In weight space ``loaded`` is not used: each adapter (original, ablated, random) is loaded to sample it.
    """
    directions = directions or _load_directions(config.directions)
    name = ablation_name(config, directions)
    folder = config.output_dir or config.sample.run_dir / "ablate" / (name + ("-weights" if config.weights else ""))
    if config.weights:
        conditions, files = _weight_conditions(config, directions, name)
        if not config.evaluate:
            return InterventionResult(pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), files)
    else:
        conditions, files = ablation_conditions(config, directions), {}
        if config.reference:
            conditions.insert(0, _reference(config.sample, config.reference))
    with _judge(config.judge, judge) as scorer:
        if config.weights:
            with Store.in_folder(config.sample.run_dir) as store:
                store.record_run("ablate-weights", config)
            answers = {condition.label: sample(condition.settings, show_progress=show_progress)
                       for condition in conditions}
        else:
            answers = run_conditions(config, "ablate", conditions, loaded, show_progress)
        result = _judged(answers, conditions, config.sample, config.judge, scorer, config.bootstrap_samples,
                         show_progress)
    result.files.update(files)
    result.files.update(_write(result, folder))
    result.files["plot"] = plot_model_comparison(result.summary, folder / "em_ablation.png")
    return result


def ablation_check(organism: SampleConfig, judge: Judge, loaded: LoadedModel | None = None,
                   labels: list[str] | None = None, layer: int | None = None, select: SelectConfig | None = None,
                   output_dir: Path | None = None, show_progress: bool = False) -> tuple[pd.DataFrame, Path]:
    """The organism's misalignment direction, ablated: EM of the organism as sampled, with its mean-diff
    direction projected out at every layer, and with a norm-matched random direction projected out.

    ``organism`` are the settings its judged answers were sampled with (they are reused, not resampled);
    ``loaded`` is the organism (base model with its adapter), loaded from those settings when None. The
    direction comes from ``labels``' answers (default the organism's), measured at ``layer`` (default the
    middle layer), as in the papers. Returns the summary (one row per condition) and the plot's path.
    """
    if loaded is not None and organism.adapters and not hasattr(loaded.model, "peft_config"):
        raise EmkitError("the loaded model has no adapter, so it is not the organism",
                         fix="pass the base model loaded with the organism's adapters, or None")
    loaded = loaded or load_model(organism.model, organism.adapters, organism.device, organism.dtype,
                                  organism.trust_remote_code)
    found = find_directions(DirectionsConfig(
        run_dir=organism.run_dir, judge=judge.identity, labels=labels or [organism.label], model=organism.model,
        adapters=organism.adapters, select=select or SelectConfig(), methods=["mean_diff"], device=organism.device,
        dtype=organism.dtype, trust_remote_code=organism.trust_remote_code), loaded)
    directions = found.directions["mean-diff"]
    chosen = layer if layer is not None else directions.layers[len(directions.layers) // 2]
    config = AblateConfig(directions=found.paths["mean-diff"], layer=chosen, name=f"direction-L{chosen}",
                          label_prefix=f"{organism.label}-", reference=organism.label, sample=organism,
                          output_dir=output_dir)
    result = run_ablation(config, loaded, directions, judge, show_progress)
    return result.summary, result.files["plot"]


def _weight_conditions(config: AblateConfig, directions: Directions,
                       name: str) -> tuple[list[Condition], dict[str, Path]]:
    """Write the ablated and random-ablated adapters; the conditions that sample them (and the original)."""
    if config.strength != 1:
        raise EmkitError(f"ablation strength {config.strength:g} applies to activation ablation only; weight-space "
                         "ablation always removes the direction from the adapter's writes",
                         fix="drop strength= or weights=true")
    adapter = config.adapter
    if adapter is None:
        if len(config.sample.adapters) != 1:
            raise EmkitError("weight-space ablation needs the adapter folder to ablate",
                             fix="set adapter= (or sample.adapters to exactly one adapter)")
        adapter = Path(config.sample.adapters[0])
    target, baseline, layers = ablation_targets(config, directions)
    if layers is not None:
        target = dict.fromkeys(layers, target)
        baseline = dict.fromkeys(layers, baseline)
    output = config.output_adapter or config.sample.run_dir / "adapters" / f"{config.label_prefix}{name}"
    written = {"adapter": _ablated_adapter(adapter, target, output, config.modules)}
    if config.random_baseline:
        written["random_adapter"] = _ablated_adapter(adapter, baseline, output.with_name(output.name + "-random"),
                                                     config.modules)
    conditions = []
    if config.reference:
        conditions.append(_reference(config.sample.model_copy(update={"adapters": [str(adapter)]}), config.reference))
    for kind, key, suffix, vectors in (("ablate", "adapter", name, target),
                                       ("ablate-random", "random_adapter", "random", baseline)):
        if key in written:
            settings = config.sample.model_copy(update={
                "label": f"{config.label_prefix}weights-{suffix}", "adapters": [str(written[key])],
                "intervention": f"weights-{kind}:{fingerprint(kind, vectors, config.seed)}:"
                                f"layers={applied_layers(vectors, None)}:{','.join(config.modules)}"})
            conditions.append(Condition(settings, kind, _no_hook, config.layer))
    return conditions, written


def _ablated_adapter(adapter: Path, direction, output: Path, modules: list[str]) -> Path:
    """Write the ablated copy; a folder written by an earlier ablation is replaced, anything else is kept."""
    return ablate_adapter(adapter, direction, output, modules, overwrite=(output / RECORD).is_file())


def _no_hook(model) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def _reference(settings: SampleConfig, label: str) -> Condition:
    return Condition(settings.model_copy(update={"label": label}), "reference", _no_hook)


@contextlib.contextmanager
def _judge(config: JudgeConfig, judge: Judge | None):
    """The given judge, or one made from the config (before any sampling, so a bad setting fails fast) and closed."""
    if judge is not None:
        yield judge
        return
    made = make_judge(config)
    try:
        yield made
    finally:
        made.close()


def _judged(answers: dict[str, list[SampleRecord]], conditions: list[Condition], settings: SampleConfig,
            judge_config: JudgeConfig, judge: Judge, bootstrap_samples: int, show_progress: bool) -> InterventionResult:
    """Judge every condition's answers; summaries in condition order, with kind, layer and scale columns."""
    metrics = list(dict.fromkeys([*CORE_METRICS, *judge_config.metrics]))
    for metric in metrics:
        judge.check_metric(metric)
    records = [record for condition in conditions for record in answers[condition.label]]
    with Store.in_folder(settings.run_dir) as store:
        scores = judge_records(store, judge, records, load_questions(settings.questions), metrics,
                               judge_config.prompts, show_progress)
    summary, per_question = summarise_scores(scores, metrics, bootstrap_samples=bootstrap_samples)
    order = {condition.label: index for index, condition in enumerate(conditions)}
    summary = summary.sort_values("model", key=lambda labels: labels.map(order)).reset_index(drop=True)
    by_label = {condition.label: condition for condition in conditions}
    added = ("kind", "layer", "scale")
    summary = summary.assign(**{column: [getattr(by_label[label], column) for label in summary["model"]]
                                for column in added})
    summary = summary[["model", *added, *(column for column in summary.columns if column not in ("model", *added))]]
    return InterventionResult(scores, summary, per_question, validity=judge_validity(judge, settings.model))


def _write(result: InterventionResult, folder: Path) -> dict[str, Path]:
    return {"scores": write_table(result.scores, folder / "scores.csv"),
            "summary": write_table(result.summary, folder / "summary.csv"),
            "per_question": write_table(result.per_question, folder / "per_question.csv"),
            "judge": write_validity(result.validity, folder)}


def _load_directions(path: Path | None) -> Directions:
    if path is None:
        raise EmkitError("no directions given", fix="set directions= to a saved directions file")
    return Directions.load(path)


def _stem(path: Path | None, directions: Directions) -> str:
    return path.stem if path is not None else directions.method
