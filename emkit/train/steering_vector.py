"""Steering-vector training and use: one vector v, added as alpha * v at one site, everything else frozen.

The third paper compares solutions of very different shapes (rank-1 adapters, steering vectors) on
the same task; a steering vector is the smallest: d_model numbers, the same shift at every position
of every sequence. The site is the output of decoder layer L (``residual``, the convention of
:mod:`emkit.interp.hooks`, so a trained vector compares directly with directions measured there) or
the output of that layer's MLP (``mlp``, where a rank-1 down-projection adapter writes).

Training goes through the ordinary loop (``preset: steering-vector``): :class:`SteeredModel` wraps the
frozen model and offers what the loop uses of a peft model (``get_base_model``, ``save_pretrained``,
``disable_adapter`` for the KL reference), so data, loss, KL term, checkpoints and resume are shared.
The vector is saved as ``steering_vector.safetensors`` with its layer, site and alpha in the metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from emkit.errors import EmkitError
from emkit.interp.hooks import decoder_layers, hidden_of
from emkit.train.config import SteeringSettings

VECTOR_FILE = "steering_vector.safetensors"


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
        """Read a saved vector: a ``.safetensors`` file or a folder holding ``steering_vector.safetensors``."""
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
    path = Path(path).expanduser()
    return (path / VECTOR_FILE).is_file() or (path.is_file() and path.suffix == ".safetensors")


class SteeredModel(nn.Module):
    """A frozen causal LM with one trainable steering vector hooked in: what the training loop trains."""

    def __init__(self, model: nn.Module, steering: SteeringVector) -> None:
        super().__init__()
        model.requires_grad_(False)
        self.model, self.steering = model, steering
        site_module(model, steering.layer, steering.site).register_forward_hook(steering.hook)

    def get_base_model(self) -> nn.Module:
        return self.model

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def disable_adapter(self) -> AbstractContextManager[None]:
        """The base model, under the name peft gives it (what the KL term's reference switches)."""
        return self.steering.switched_off()

    def save_pretrained(self, folder: str | Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.steering.save(Path(folder) / VECTOR_FILE)

    def load_vector(self, folder: Path) -> None:
        with torch.no_grad():
            self.steering.vector.copy_(SteeringVector.load(folder).vector)


def steered_model(model: nn.Module, settings: SteeringSettings) -> SteeredModel:
    """Wrap ``model`` for steering-vector training (a seeded random start of norm ``init_scale``, or zero)."""
    num_layers = len(decoder_layers(model))
    layer = num_layers // 2 if settings.layer is None else settings.layer
    size = model.get_input_embeddings().weight.shape[1]
    start = torch.randn(size)
    start = start / start.norm() * settings.init_scale
    return SteeredModel(model, SteeringVector(start, layer, settings.site, settings.alpha))


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
