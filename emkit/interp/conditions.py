"""What a steering or ablation condition applies, and how it is identified.

A condition's hook is a function from the model to a context manager that adds (steering) or
projects out (ablation) a direction while it is open. Its fingerprint (a hash of the direction's
values, or a random direction's seed) goes into the sampled settings, so answers given under one
direction are never reused for another.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager

import torch
from torch import nn

from emkit.interp.directions import Directions
from emkit.interp.hooks import Positions, ablate, random_like, steer

Ablated = torch.Tensor | dict[int, torch.Tensor]
"""One direction for every ablated layer, or each layer's own direction."""
Hook = Callable[[nn.Module], AbstractContextManager[None]]
"""What a condition samples under: given the model, a context manager that holds the intervention."""


def steer_hook(vector: torch.Tensor, layer: int, scale: float, positions: Positions) -> Hook:
    """Add ``scale`` times the unit ``vector`` at ``layer`` (at ``positions``) while open."""
    return lambda model: steer(model, (vector, [layer]), scale, positions)


def ablate_hook(direction: Ablated, layers: list[int] | None, strength: float) -> Hook:
    """Project ``direction`` out (``strength`` times its component) at ``layers`` (None: every layer) while open."""
    return lambda model: ablate(model, direction, layers, strength)


def no_hook(model: nn.Module) -> AbstractContextManager[None]:
    """The model as it is (the reference condition, or a condition whose intervention is in its weights)."""
    return contextlib.nullcontext()


def ablation_targets(directions: Directions, layer: int | None, ablate_layers: list[int] | None,
                     seed: int) -> tuple[Ablated, Ablated, list[int] | None]:
    """(direction, norm-matched random baseline, layers): the direction measured at ``layer`` for
    ``ablate_layers`` (None: every layer), or with ``layer`` None a {layer: vector} mapping of each of
    ``ablate_layers``' (None: every) own direction (layers None)."""
    if layer is None:
        target = directions.as_mapping(ablate_layers)
        return target, {index: random_like(vector, seed + index) for index, vector in target.items()}, None
    target = directions.at(layer)
    return target, random_like(target, seed), ablate_layers


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
