"""Steer and ablate the residual stream with forward hooks that are always removed.

Layer L means the output of decoder layer L (0-based), the same convention as
:mod:`emkit.interp.activations`, so a direction found at layer L is applied where it was measured.
The hooks sit on the decoder layers themselves, so they work for any module layout that has a
list of decoder layers (Llama, Qwen2, Gemma2, ...), through a peft wrapper, and inside HF
``generate`` with a KV cache: there the prompt pass sees the whole prompt (sequence length > 1)
and every later step one new token.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from emkit.errors import EmkitError

Positions = Literal["all", "prompt", "generated"]
DirectionSpec = Mapping[int, torch.Tensor] | tuple[torch.Tensor, Sequence[int]]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of decoder layers of a causal LM, unwrapping peft first."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    layers = getattr(decoder, "layers", None)
    if isinstance(layers, nn.ModuleList):
        return layers
    config = getattr(model, "config", None)
    count = config.get_text_config().num_hidden_layers if config is not None else None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.endswith("layers") and len(module) == count:
            return module
    raise EmkitError(f"cannot find the decoder layers of {type(model).__name__}",
                     fix="use a standard Hugging Face causal LM (a model.layers list of decoder layers)")


def hidden_of(output: torch.Tensor | tuple) -> torch.Tensor:
    """The hidden states in a decoder layer's output (a tensor, or a tuple led by one in older layouts)."""
    return output[0] if isinstance(output, tuple) else output


def _with_hidden(output: torch.Tensor | tuple, hidden: torch.Tensor) -> torch.Tensor | tuple:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def unit_vectors(direction: DirectionSpec, num_layers: int) -> dict[int, torch.Tensor]:
    """Per-layer unit vectors (float32) from a {layer: vector} mapping or a (vector, layers) pair."""
    if isinstance(direction, tuple):
        vector, layers = direction
        pairs = {int(layer): vector for layer in layers}
    else:
        pairs = {int(layer): vector for layer, vector in direction.items()}
    units = {}
    for layer, vector in pairs.items():
        if not 0 <= layer < num_layers:
            raise EmkitError(f"layer {layer} is outside the model ({num_layers} layers: 0-{num_layers - 1})",
                             fix="choose layers within that range")
        vector = vector.detach().float().flatten()
        norm = vector.norm()
        if not torch.isfinite(norm) or norm == 0:
            raise EmkitError(f"the direction for layer {layer} has zero or non-finite norm",
                             fix="use a non-zero direction")
        units[layer] = vector / norm
    return units


@contextmanager
def steer(model: nn.Module, direction: DirectionSpec, scale: float,
          positions: Positions = "all") -> Iterator[None]:
    """Add ``scale`` times the unit direction to the chosen layers' outputs while the block runs.

    ``positions``: ``all`` steers every position of every pass; ``prompt`` only the prompt pass of
    generation (any forward with more than one position, so also a plain forward); ``generated``
    only the one-token steps after it. Assumes generation with a KV cache (the default).
    """
    if positions not in ("all", "prompt", "generated"):
        raise EmkitError(f"unknown steering positions '{positions}'", fix="use all, prompt or generated")
    layers = decoder_layers(model)
    shifts = {layer: unit * scale for layer, unit in unit_vectors(direction, len(layers)).items()}

    def make_hook(shift: torch.Tensor):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor | tuple):
            hidden = hidden_of(output)
            prompt_pass = hidden.shape[1] > 1
            if (positions == "prompt" and not prompt_pass) or (positions == "generated" and prompt_pass):
                return None
            return _with_hidden(output, (hidden.float() + shift.to(hidden.device)).to(hidden.dtype))

        return hook

    with _hooked(layers, {layer: make_hook(shift) for layer, shift in shifts.items()}):
        yield


@contextmanager
def ablate(model: nn.Module, direction: torch.Tensor | Mapping[int, torch.Tensor],
           layers: Sequence[int] | None = None, strength: float = 1.0) -> Iterator[None]:
    """Subtract ``strength`` times the residual stream's projection on the unit direction, x - strength (x.u)u,
    at all or the chosen layers.

    ``direction`` is one vector (used at ``layers``, default every layer) or a {layer: vector} mapping.
    ``strength`` 1 projects the direction out (the component along it becomes 0); above 1 reverses it
    (1.5 leaves -0.5 times the original component); below 1 removes part of it.
    """
    if not strength > 0:
        raise EmkitError(f"ablation strength must be positive; got {strength}",
                         fix="use 1 to project the direction out, more than 1 to reverse it")
    modules = decoder_layers(model)
    spec: DirectionSpec = direction if isinstance(direction, Mapping) else (
        direction, range(len(modules)) if layers is None else layers)
    units = unit_vectors(spec, len(modules))

    def make_hook(unit: torch.Tensor):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor | tuple):
            hidden = hidden_of(output)
            u = unit.to(hidden.device)
            values = hidden.float()
            return _with_hidden(output, (values - strength * (values @ u).unsqueeze(-1) * u).to(hidden.dtype))

        return hook

    with _hooked(modules, {layer: make_hook(unit) for layer, unit in units.items()}):
        yield


@contextmanager
def _hooked(modules: nn.ModuleList, hooks: dict) -> Iterator[None]:
    handles = []
    try:
        for layer, hook in hooks.items():
            handles.append(modules[layer].register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def random_like(direction: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Random directions with the same norm as ``direction`` (row by row for [layers, d]): the baseline
    that shows an effect comes from the direction, not from perturbing the residual stream at all."""
    generator = torch.Generator().manual_seed(seed)
    values = direction.detach().float().cpu()
    noise = torch.randn(values.shape, generator=generator)
    return noise / noise.norm(dim=-1, keepdim=True) * values.norm(dim=-1, keepdim=True)
