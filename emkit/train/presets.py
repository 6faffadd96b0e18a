"""Adapter presets from the papers, scaled to the depth of whichever model is trained.

- ``rank1-single``: one rank-1 LoRA adapter on the MLP down-projection of the middle layer
  (Turner et al. 2025 use layer 24 of Qwen2.5-14B's 48).
- ``rank1-multi``: nine rank-1 down-projection adapters in three groups of three consecutive
  layers, placed at the same relative depths as the papers' 9-adapter organism
  (layers 15-17, 21-23 and 27-29 of 48).
- ``lora-all``: rank-32 LoRA on every linear projection.
- ``full``: full fine-tuning.
- ``steering-vector``: one trained vector added to a layer's residual stream or MLP output
  (:mod:`emkit.train.steering_vector`); every weight of the model stays frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from emkit.errors import EmkitError

PresetName = Literal["rank1-single", "rank1-multi", "lora-all", "full"]
# Everything `emkit train` can train; PresetName are the weight-space presets (what loads as model or adapter).
TrainPresetName = Literal[PresetName, "steering-vector"]
MULTI_GROUP_DEPTHS = (15 / 48, 21 / 48, 27 / 48)
GROUP_SIZE = 3


@dataclass(frozen=True)
class Preset:
    """Default adapter shape and learning rate of one preset (every field overridable in the config)."""

    rank: int | None
    alpha: float
    use_rslora: bool
    target_modules: tuple[str, ...] | str
    learning_rate: float


PRESETS: dict[str, Preset] = {
    "rank1-single": Preset(rank=1, alpha=32, use_rslora=True, target_modules=("down_proj",), learning_rate=2e-4),
    "rank1-multi": Preset(rank=1, alpha=32, use_rslora=True, target_modules=("down_proj",), learning_rate=2e-4),
    "lora-all": Preset(rank=32, alpha=64, use_rslora=True, target_modules="all-linear", learning_rate=1e-4),
    "full": Preset(rank=None, alpha=0, use_rslora=False, target_modules=(), learning_rate=1e-5),
    # One vector has few degrees of freedom; Adam moves each coordinate by about lr per step.
    "steering-vector": Preset(rank=None, alpha=0, use_rslora=False, target_modules=(), learning_rate=1e-3),
}


def preset_layers(preset: str, num_layers: int) -> list[int] | None:
    """Layer indices a preset adapts on a model of ``num_layers`` layers (None means every layer)."""
    if preset == "rank1-single":
        return [num_layers // 2]
    if preset == "rank1-multi":
        if num_layers < GROUP_SIZE * len(MULTI_GROUP_DEPTHS):
            raise EmkitError(f"preset rank1-multi needs at least 9 layers; this model has {num_layers}",
                             fix="use preset rank1-single, or set lora.layers explicitly")
        starts = [round(depth * num_layers) for depth in MULTI_GROUP_DEPTHS]
        for index in range(1, len(starts)):
            starts[index] = max(starts[index], starts[index - 1] + GROUP_SIZE)
        overflow = max(0, starts[-1] + GROUP_SIZE - num_layers)
        starts = [start - overflow for start in starts]
        return [start + offset for start in starts for offset in range(GROUP_SIZE)]
    return None
