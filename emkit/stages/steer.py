"""``emkit steer``: sample with a direction added per (layer, scale), judge, and compare with the baselines.

The question set is sampled once for every (layer, scale) with the direction added, once with a
norm-matched random direction at the same layer and scale (the baseline that separates "this
direction" from "any push of this size"), and once unsteered; EM % per condition is the result.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from emkit.config import StageConfig
from emkit.interp import Directions, Positions, random_like
from emkit.interp.conditions import fingerprint, steer_hook
from emkit.judges.base import Judge
from emkit.judges.run import JudgeConfig, open_judge
from emkit.models import LoadedModel
from emkit.report.plots import plot_steering
from emkit.sampling.config import SampleConfig, require_emkit_backend
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


class SteerConfig(StageConfig):
    """A steering sweep, judged: EM % per (layer, scale) against the random direction and the unsteered model."""

    directions: Path | None = None
    """Saved directions file (unset when the caller passes a Directions record)."""
    layers: list[int] = Field(min_length=1)
    """Decoder layers to steer, one condition per layer (each uses its own layer's direction)."""
    scales: list[float] = Field(min_length=1)
    """Added multiples of the unit direction (residual-stream units; negative steers away)."""
    positions: Positions = "all"
    """all, prompt (the prompt pass only) or generated (the generated tokens only)."""
    random_baseline: bool = True
    """Also sample each (layer, scale) with a norm-matched random direction."""
    seed: int = 0
    """Seed of the random directions."""
    label_prefix: str = ""
    """Prepended to every label, to keep several models' sweeps apart in one store."""
    sample: SampleConfig = Field(default_factory=SampleConfig)
    """Model, questions and sampling settings (its label is replaced per condition)."""
    reference: str | None = "unsteered"
    """Label of the unsteered answers (sampled if missing; an existing label, same settings, is reused); null: none."""
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    """Judge and metrics (see `emkit config judge`)."""
    bootstrap_samples: int = Field(1000, gt=0)
    """Bootstrap resamples behind each 95% interval."""
    output_dir: Path | None = None
    """Folder for the tables and plot; unset: sample.run_dir/steer/<directions file name>."""

    @model_validator(mode="after")
    def _sampled_by_emkit(self) -> SteerConfig:
        require_emkit_backend(self.sample, "steering adds a direction to the residual stream by forward hooks")
        return self


def steering_conditions(config: SteerConfig, directions: Directions) -> list[Condition]:
    """Every (layer, scale) condition of a steering sweep, each followed by its random baseline."""
    conditions = []
    for layer in config.layers:
        vector = directions.at(layer)
        vectors = [("steer", vector)] + ([("random", random_like(vector, config.seed + layer))]
                                         if config.random_baseline else [])
        for scale in config.scales:
            for kind, chosen in vectors:
                label = f"{config.label_prefix}{kind}-L{layer}-s{scale:g}"
                identity = fingerprint(kind, chosen, config.seed + layer)
                intervention = f"{kind}:{identity}:L{layer}:s{scale:g}:{config.positions}"
                settings = config.sample.model_copy(update={"label": label, "intervention": intervention})
                conditions.append(Condition(settings, kind, steer_hook(chosen, layer, scale, config.positions),
                                            layer, scale))
    return conditions


def run_steering(config: SteerConfig, show_progress: bool = True, loaded: LoadedModel | None = None,
                 directions: Directions | None = None, judge: Judge | None = None) -> InterventionResult:
    """Sample (or resume) every steering condition and its baselines, judge them, write the table and plot.

    ``loaded``, ``directions`` and ``judge``: already in this process (else loaded from the config; a judge
    passed in is not closed).
    """
    directions = directions or load_directions(config.directions)
    conditions = steering_conditions(config, directions)
    if config.reference:
        conditions.insert(0, reference_condition(config.sample, config.reference))
    with open_judge(config.judge, judge_metrics(config.judge), judge) as scorer:
        answers = run_conditions(config, "steer", config.sample, conditions, loaded, show_progress)
        result = judge_conditions(answers, conditions, config.sample, config.judge, scorer, config.bootstrap_samples,
                                  show_progress)
    stem = config.directions.stem if config.directions is not None else directions.method
    folder = config.output_dir or config.sample.run_dir / "steer" / stem
    result.files.update(write_tables(result, folder))
    result.files["plot"] = plot_steering(result.summary, folder / "em_by_scale.png")
    return result


def summary_lines(result: InterventionResult, config: SteerConfig) -> list[str]:
    """EM and coherent % per condition, the judge's validity, and where the tables and plot are."""
    return result_lines(result)


CONFIG = SteerConfig
run = run_steering
