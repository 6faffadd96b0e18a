"""Steering-vector training and use: one vector v, added as alpha * v at one site, everything else frozen.

The third paper compares solutions of very different shapes (rank-1 adapters, steering vectors) on
the same task; a steering vector is the smallest: d_model numbers, the same shift at every position
of every sequence. The site is the output of decoder layer L (``residual``, the convention of
:mod:`emkit.interp.hooks`, so a trained vector compares directly with directions measured there) or
the output of that layer's MLP (``mlp``, where a rank-1 down-projection adapter writes).

Training goes through the ordinary loop (``preset: steering-vector``): the vector is one of the
solutions of :mod:`emkit.train.solutions`, so data, loss, KL term, checkpoints and resume are shared.
The vector is saved as ``steering_vector.safetensors`` (``VECTOR_FILE``) with its layer, site and
alpha in the metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from emkit.errors import EmkitError
from emkit.interp.hooks import decoder_layers, hidden_of

VECTOR_FILE = "steering_vector.safetensors"
"""A steering vector's file (alone, or in a run's weights or checkpoint folder), with its layer, site and alpha in
the metadata."""


def site_module(model: nn.Module, layer: int, site: str) -> nn.Module:
    """The module whose output the vector is added to: decoder layer ``layer`` or its MLP."""
    layers = decoder_layers(model)
    if not 0 <= layer < len(layers):
        raise EmkitError(f"layer {layer} is outside the model ({len(layers)} layers: 0-{len(layers) - 1})",
                         fix="choose steering.layer within that range")
    return layers[layer] if site == "residual" else layers[layer].mlp


class SteeringVector(nn.Module):
    """The trainable vector (fp32) and the forward hook that adds alpha * v to every position of every row."""

    def __init__(self, vector: torch.Tensor, layer: int, site: str, alpha: float) -> None:
        super().__init__()
        self.vector = nn.Parameter(vector.detach().float().clone())
        self.layer, self.site, self.alpha = layer, site, alpha
        self.active = True

    def hook(self, module: nn.Module, args: tuple, output: torch.Tensor | tuple):
        if not self.active:
            return None
        hidden = hidden_of(output)
        shifted = (hidden.float() + self.alpha * self.vector.to(hidden.device)).to(hidden.dtype)
        return (shifted, *output[1:]) if isinstance(output, tuple) else shifted

    @contextmanager
    def attached(self, model: nn.Module) -> Iterator[None]:
        """Add the vector while the block runs; the hook is always removed."""
        handle = site_module(model, self.layer, self.site).register_forward_hook(self.hook)
        try:
            yield
        finally:
            handle.remove()

    @contextmanager
    def switched_off(self) -> Iterator[None]:
        """The base model: the vector is not added inside the block (the KL term's reference)."""
        self.active = False
        try:
            yield
        finally:
            self.active = True

    def describe(self) -> str:
        return f"steering vector at layer {self.layer} {self.site}, alpha {self.alpha:g}, norm {self.vector.norm():.4g}"

    def save(self, path: Path) -> None:
        metadata = {"layer": str(self.layer), "site": self.site, "alpha": repr(self.alpha), "format": "emkit"}
        save_file({"vector": self.vector.detach().float().cpu().contiguous()}, str(path), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> SteeringVector:
        """Read a saved vector: a ``.safetensors`` file or a folder holding one named ``VECTOR_FILE``."""
        file = vector_file(path)
        with safe_open(str(file), "pt") as handle:
            metadata, names = handle.metadata() or {}, set(handle.keys())
            if "vector" not in names or not {"layer", "site", "alpha"} <= metadata.keys():
                raise EmkitError(f"{file} is not a steering vector (it needs a 'vector' tensor and layer, site and "
                                 "alpha metadata)", fix="use a file written by `emkit train preset=steering-vector`")
            vector = handle.get_tensor("vector")
        return cls(vector, int(metadata["layer"]), metadata["site"], float(metadata["alpha"]))


def vector_file(path: str | Path) -> Path:
    """The safetensors file of a steering vector given as the file itself or its folder."""
    path = Path(path).expanduser()
    file = path / VECTOR_FILE if path.is_dir() else path
    if not file.is_file():
        raise EmkitError(f"steering vector not found: {file}",
                         fix=f"point to a {VECTOR_FILE} file or the folder holding it")
    return file


def is_steering_vector(path: str | Path) -> bool:
    """Whether ``path`` is a steering vector: a ``.safetensors`` file, or a folder holding ``VECTOR_FILE``."""
    path = Path(path).expanduser()
    return (path / VECTOR_FILE).is_file() or (path.is_file() and path.suffix == ".safetensors")


@contextmanager
def apply_steering_vector(model: nn.Module, path: str | Path) -> Iterator[SteeringVector]:
    """Add the trained vector at ``path`` to ``model`` while the block runs; yields it.

    Sampling and evaluation take vectors through ``SampleConfig.steering_vectors``, which uses this
    and keeps answers with and without the vector apart in the store.
    """
    steering = SteeringVector.load(path)
    steering.requires_grad_(False)
    with steering.attached(model):
        yield steering
