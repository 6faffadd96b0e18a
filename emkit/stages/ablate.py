"""``emkit ablate``: sample with a direction removed, judge, and compare with the baselines.

Activation ablation projects the direction out of the residual stream and compares with a
norm-matched random direction projected out and with the un-ablated model. Weight-space ablation
instead writes a copy of a LoRA adapter that cannot write along the direction (and one for a random
direction), then evaluates both against the original adapter; pointing it at another organism's
adapter is the transfer experiment.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer
from pydantic import Field, model_validator

from emkit.config import StageConfig
from emkit.errors import EmkitError
from emkit.interp import Directions, SelectConfig, ablate_adapter
from emkit.interp.conditions import Ablated, ablate_hook, ablation_targets, applied_layers, fingerprint, no_hook
from emkit.interp.weight_ablation import RECORD
from emkit.judges.base import Judge
from emkit.judges.run import JudgeConfig, open_judge
from emkit.models import LoadedModel
from emkit.report.plots import plot_model_comparison
from emkit.sampling.config import SampleConfig, require_emkit_backend
from emkit.stages import sample
from emkit.stages.cli_options import ConfigOption, OverridesArgument, QuietOption, load_config
from emkit.stages.directions import DirectionsConfig, find_directions
from emkit.stages.interventions import (
    Condition,
    InterventionResult,
    judge_conditions,
    judge_metrics,
    load_directions,
    reference_condition,
    result_lines,
    run_conditions,
    write_tables,
)
from emkit.store import Store


class AblateConfig(StageConfig):
    """An ablation, judged: EM % with the direction removed, against a random direction and the model as is."""

    directions: Path | None = None
    """Saved directions file (unset when the caller passes a Directions record)."""
    layer: int | None = None
    """Ablate the direction measured at this layer everywhere; unset ablates each layer's own direction."""
    ablate_layers: list[int] | None = None
    """Layers to ablate at; unset means every layer (one direction) or every direction's layer."""
    strength: float = Field(1.0, gt=0)
    """Multiple of the projection on the unit direction that is subtracted: 1 projects it out, 1.5 reverses half
    of it (leaves -0.5 times the original component); the random baseline is ablated with the same strength."""
    name: str | None = None
    """Label suffix (ablate-NAME); unset takes the directions file's name, else the method."""
    random_baseline: bool = True
    """Also sample with a norm-matched random direction ablated at the same layers."""
    seed: int = 0
    """Seed of the random direction."""
    label_prefix: str = ""
    """Prepended to every label, to keep several models' sweeps apart in one store."""
    sample: SampleConfig = Field(default_factory=SampleConfig)
    """Model, questions and sampling settings (its label is replaced per condition)."""
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

    @model_validator(mode="after")
    def _sampled_by_emkit(self) -> AblateConfig:
        require_emkit_backend(self.sample, "ablation projects a direction out of the residual stream by forward hooks")
        return self


def ablation_name(config: AblateConfig, directions: Directions) -> str:
    """The name in the ablated condition's label: as configured, else the directions file's, else the method."""
    return config.name or (config.directions.stem if config.directions else directions.method)


def ablation_conditions(config: AblateConfig, directions: Directions) -> list[Condition]:
    """The ablated condition and (unless turned off) its norm-matched random baseline."""
    target, baseline, layers = ablation_targets(directions, config.layer, config.ablate_layers, config.seed)
    pairs = [("ablate", f"ablate-{ablation_name(config, directions)}", target)] + (
        [("ablate-random", "ablate-random", baseline)] if config.random_baseline else [])
    conditions = []
    for kind, suffix, chosen in pairs:
        intervention = f"{kind}:{fingerprint(kind, chosen, config.seed)}:layers={applied_layers(chosen, layers)}"
        if config.strength != 1:  # only when set, so answers stored before the field existed keep their hash
            intervention += f":strength={config.strength:g}"
        settings = config.sample.model_copy(update={"label": f"{config.label_prefix}{suffix}",
                                                    "intervention": intervention})
        conditions.append(Condition(settings, kind, ablate_hook(chosen, layers, config.strength), config.layer))
    return conditions


def run_ablation(config: AblateConfig, show_progress: bool = True, loaded: LoadedModel | None = None,
                 directions: Directions | None = None, judge: Judge | None = None) -> InterventionResult:
    """Ablate the direction (activation or weight space) and its random baseline, judge, write table and plot.

    ``loaded``, ``directions`` and ``judge``: already in this process (else loaded from the config; a judge
    passed in is not closed). In weight space ``loaded`` is not used: each adapter (original, ablated, random)
    is loaded to sample it.
    """
    directions = directions or load_directions(config.directions)
    name = ablation_name(config, directions)
    folder = config.output_dir or config.sample.run_dir / "ablate" / (name + ("-weights" if config.weights else ""))
    if config.weights:
        conditions, files = _weight_conditions(config, directions, name)
        if not config.evaluate:
            return InterventionResult(pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), files)
    else:
        conditions, files = ablation_conditions(config, directions), {}
        if config.reference:
            conditions.insert(0, reference_condition(config.sample, config.reference))
    with open_judge(config.judge, judge_metrics(config.judge), judge) as scorer:
        if config.weights:
            with Store.in_folder(config.sample.run_dir) as store:
                store.record_run("ablate-weights", config)
            answers = {condition.label: sample.run(condition.settings, show_progress)
                       for condition in conditions}
        else:
            answers = run_conditions(config, "ablate", config.sample, conditions, loaded, show_progress)
        result = judge_conditions(answers, conditions, config.sample, config.judge, scorer, config.bootstrap_samples,
                                  show_progress)
    result.files.update(files)
    result.files.update(write_tables(result, folder))
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
    loaded = loaded or organism.load_model()
    found = find_directions(DirectionsConfig(
        run_dir=organism.run_dir, judge=judge.identity, labels=labels or [organism.label], model=organism.model,
        adapters=organism.adapters, select=select or SelectConfig(), methods=["mean_diff"], device=organism.device,
        dtype=organism.dtype, trust_remote_code=organism.trust_remote_code), loaded=loaded)
    directions = found.directions["mean-diff"]
    chosen = layer if layer is not None else directions.layers[len(directions.layers) // 2]
    config = AblateConfig(directions=found.paths["mean-diff"], layer=chosen, name=f"direction-L{chosen}",
                          label_prefix=f"{organism.label}-", reference=organism.label, sample=organism,
                          output_dir=output_dir)
    result = run_ablation(config, show_progress, loaded, directions, judge)
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
    target, baseline, layers = ablation_targets(directions, config.layer, config.ablate_layers, config.seed)
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
        conditions.append(reference_condition(config.sample.model_copy(update={"adapters": [str(adapter)]}),
                                              config.reference))
    for kind, key, suffix, vectors in (("ablate", "adapter", name, target),
                                       ("ablate-random", "random_adapter", "random", baseline)):
        if key in written:
            settings = config.sample.model_copy(update={
                "label": f"{config.label_prefix}weights-{suffix}", "adapters": [str(written[key])],
                "intervention": f"weights-{kind}:{fingerprint(kind, vectors, config.seed)}:"
                                f"layers={applied_layers(vectors, None)}:{','.join(config.modules)}"})
            conditions.append(Condition(settings, kind, no_hook, config.layer))
    return conditions, written


def _ablated_adapter(adapter: Path, direction: Ablated, output: Path, modules: list[str]) -> Path:
    """Write the ablated copy; a folder written by an earlier ablation is replaced, anything else is kept."""
    return ablate_adapter(adapter, direction, output, modules, overwrite=(output / RECORD).is_file())


def summary_lines(result: InterventionResult, config: AblateConfig) -> list[str]:
    """The adapters written (weight space), then EM and coherent % per condition, the judge's validity and where
    the tables and plot are (nothing more when the adapters were only written)."""
    lines = [f"{key.replace('_', ' ')}: {result.files[key]}" for key in ("adapter", "random_adapter")
             if key in result.files]
    return lines + (result_lines(result) if not result.summary.empty else [])


def command(config: Path | None = ConfigOption, overrides: list[str] | None = OverridesArgument,
            weights: bool = typer.Option(False, "--weights", help="Ablate in weight space (same as weights=true)."),
            quiet: bool = QuietOption) -> None:
    """Sample with a direction projected out (or adapters ablated in weight space) vs a random one, judge."""
    settings = load_config(AblateConfig, config, [*(["weights=true"] if weights else []), *(overrides or [])])
    result = run_ablation(settings, show_progress=not quiet)
    lines = summary_lines(result, settings)
    if lines:
        typer.echo("\n".join(lines))


CONFIG = AblateConfig
run = run_ablation
