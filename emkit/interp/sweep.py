"""Sample answers under steering or ablation, one store label per condition.

A steering sweep samples the question set once for every (layer, scale) with the direction
added, and once with a norm-matched random direction at the same layer and scale (the baseline
that separates "this direction" from "any push of this size"). An ablation sweep samples with
the direction projected out, and with a random direction projected out. Every condition goes
into the same store under its own label (``steer-L12-s8``, ``random-L12-s8``, ``ablate-NAME``,
``ablate-random``); judging and metrics read them from there. A rerun resumes each label.

Each condition's sample settings carry an ``intervention`` string (a hash of the direction's
values, or a random direction's seed, with the layers, scale and positions), which is part of
the settings hash: a rerun with another direction file under the same labels samples afresh
instead of reusing answers that were given under a different intervention.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import Field, model_validator
from torch import nn

from emkit.config import StageConfig
from emkit.errors import EmkitError
from emkit.generate import SampleConfig, require_emkit_backend, sample
from emkit.interp.directions import Directions
from emkit.interp.hooks import Positions, ablate, random_like, steer
from emkit.models import LoadedModel, load_model
from emkit.store import SampleRecord, Store

Ablated = torch.Tensor | dict[int, torch.Tensor]


class SteerSweepConfig(StageConfig):
    """Which direction is added where, how strongly, and what is sampled under it."""

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

    @model_validator(mode="after")
    def _sampled_by_emkit(self) -> SteerSweepConfig:
        require_emkit_backend(self.sample, "steering adds a direction to the residual stream by forward hooks")
        return self


class AblationSweepConfig(StageConfig):
    """Which direction is projected out, at which layers, and what is sampled under it."""

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

    @model_validator(mode="after")
    def _sampled_by_emkit(self) -> AblationSweepConfig:
        require_emkit_backend(self.sample, "ablation projects a direction out of the residual stream by forward hooks")
        return self


@dataclass(frozen=True)
class Condition:
    """One sampled condition: its sample settings (label and intervention set) and the hook it samples under."""

    settings: SampleConfig
    kind: str
    """steer, random, ablate or ablate-random."""
    hook: Callable[[nn.Module], AbstractContextManager[None]]
    layer: int | None = None
    scale: float | None = None

    @property
    def label(self) -> str:
        return self.settings.label


def steering_conditions(config: SteerSweepConfig, directions: Directions) -> list[Condition]:
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
                conditions.append(Condition(settings, kind, _steer_hook(chosen, layer, scale, config.positions),
                                            layer, scale))
    return conditions


def ablation_targets(config: AblationSweepConfig, directions: Directions) -> tuple[Ablated, Ablated, list[int] | None]:
    """(direction, norm-matched random baseline, layers): one vector for ``layers`` (None: every layer), or a
    {layer: vector} mapping of each layer's own direction (layers None)."""
    if config.layer is None:
        target = directions.as_mapping(config.ablate_layers)
        return target, {layer: random_like(vector, config.seed + layer) for layer, vector in target.items()}, None
    target = directions.at(config.layer)
    return target, random_like(target, config.seed), config.ablate_layers


def ablation_name(config: AblationSweepConfig, directions: Directions) -> str:
    """The name in the ablated condition's label: as configured, else the directions file's, else the method."""
    return config.name or (config.directions.stem if config.directions else directions.method)


def ablation_conditions(config: AblationSweepConfig, directions: Directions) -> list[Condition]:
    """The ablated condition and (unless turned off) its norm-matched random baseline."""
    target, baseline, layers = ablation_targets(config, directions)
    pairs = [("ablate", f"ablate-{ablation_name(config, directions)}", target)] + (
        [("ablate-random", "ablate-random", baseline)] if config.random_baseline else [])
    conditions = []
    for kind, suffix, chosen in pairs:
        intervention = f"{kind}:{fingerprint(kind, chosen, config.seed)}:layers={applied_layers(chosen, layers)}"
        if config.strength != 1:  # only when set, so answers stored before the field existed keep their hash
            intervention += f":strength={config.strength:g}"
        settings = config.sample.model_copy(update={"label": f"{config.label_prefix}{suffix}",
                                                    "intervention": intervention})
        conditions.append(Condition(settings, kind, _ablate_hook(chosen, layers, config.strength), config.layer))
    return conditions


def run_conditions(config: SteerSweepConfig | AblationSweepConfig, stage: str, conditions: list[Condition],
                   loaded: LoadedModel | None = None, show_progress: bool = False) -> dict[str, list[SampleRecord]]:
    """Sample every condition under its hook (resuming what is stored); return each label's answers."""
    loaded = loaded or _load(config.sample)
    _record(config, stage)
    answers = {}
    for condition in conditions:
        with condition.hook(loaded.model):
            answers[condition.label] = sample(condition.settings, loaded, show_progress)
    return answers


def steering_sweep(config: SteerSweepConfig, loaded: LoadedModel | None = None,
                   directions: Directions | None = None, show_progress: bool = False) -> list[str]:
    """Sample every (layer, scale) condition, and its random baseline, into the store; return the labels."""
    conditions = steering_conditions(config, directions or _load_directions(config.directions))
    return list(run_conditions(config, "steer-sweep", conditions, loaded, show_progress))


def ablation_sweep(config: AblationSweepConfig, loaded: LoadedModel | None = None,
                   directions: Directions | None = None, show_progress: bool = False) -> list[str]:
    """Sample with the direction ablated (and a random one, as the baseline) into the store; return the labels."""
    conditions = ablation_conditions(config, directions or _load_directions(config.directions))
    return list(run_conditions(config, "ablate-sweep", conditions, loaded, show_progress))


def applied_layers(direction: torch.Tensor | Mapping[int, torch.Tensor], layers: list[int] | None) -> str:
    """Where an ablation acts, for its intervention description: each layer's own direction, or one at some/all."""
    if isinstance(direction, Mapping):
        return "own:" + ",".join(map(str, sorted(direction)))
    return "all" if layers is None else ",".join(map(str, layers))


def fingerprint(kind: str, direction: torch.Tensor | Mapping[int, torch.Tensor], seed: int) -> str:
    """What identifies an applied direction: a random one by its seed and width (the hooks use only its
    direction, which the seed fixes whatever the norm it was matched to), any other by a hash of its values."""
    if "random" in kind:
        vector = next(iter(direction.values())) if isinstance(direction, Mapping) else direction
        return f"seed{seed}x{vector.shape[-1]}"
    items = sorted(direction.items()) if isinstance(direction, Mapping) else [(-1, direction)]
    hasher = hashlib.sha256()
    for layer, vector in items:
        hasher.update(f"{layer}:".encode())
        hasher.update(vector.detach().float().cpu().contiguous().numpy().tobytes())
    return hasher.hexdigest()[:12]


def _steer_hook(vector: torch.Tensor, layer: int, scale: float, positions: Positions):
    return lambda model: steer(model, (vector, [layer]), scale, positions)


def _ablate_hook(direction: Ablated, layers: list[int] | None, strength: float):
    return lambda model: ablate(model, direction, layers, strength)


def _load_directions(path: Path | None) -> Directions:
    if path is None:
        raise EmkitError("no directions given", fix="set directions to a saved directions file")
    return Directions.load(path)


def _load(settings: SampleConfig) -> LoadedModel:
    return load_model(settings.model, settings.adapters, settings.device, settings.dtype, settings.trust_remote_code)


def _record(config: SteerSweepConfig | AblationSweepConfig, stage: str) -> None:
    """Keep the sweep's own config in the store: the sample rows alone do not say what was steered."""
    with Store.in_folder(config.sample.run_dir) as store:
        store.record_run(stage, config)
