"""Weight-space ablation: remove a direction from what a LoRA adapter writes into the residual stream.

A down-projection adapter adds B A x to the residual stream, so its output lies in the span of
B's columns. Replacing B with B - u u^T B (u the unit direction) makes the adapter unable to
write along u at all; each column is then rescaled to its original norm so the adapter's overall
strength is unchanged and only the direction of its writes moves. The result is a new peft
adapter folder that loads like any other. Using a direction found in one organism on another
organism's adapter (transfer) is the same call with the other adapter folder.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from emkit.errors import EmkitError
from emkit.models import ADAPTER_CONFIG_FILE, ADAPTER_FILE

RECORD = "emkit_ablation.json"
LAYER_PATTERN = re.compile(r"\.layers\.(\d+)\.")


def project_out(b: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """B - u u^T B, each column rescaled to its original norm (a column parallel to u stays zero)."""
    values = b.float()
    projected = values - torch.outer(unit, unit @ values)
    before, after = values.norm(dim=0), projected.norm(dim=0)
    kept = after > 1e-6 * before
    return projected * torch.where(kept, before / torch.where(kept, after, 1.0), 0.0)


def ablate_adapter(adapter: str | Path, direction: torch.Tensor | Mapping[int, torch.Tensor], output: str | Path,
                   modules: Sequence[str] = ("down_proj",), overwrite: bool = False) -> Path:
    """Write a copy of ``adapter`` whose ``modules`` LoRA B matrices cannot write along ``direction``.

    ``direction`` is one vector (used at every adapted layer) or a {layer: vector} mapping (layers it
    does not name are copied unchanged). Returns the new folder, which also records what was done.
    """
    source, target = Path(adapter).expanduser(), Path(output).expanduser()
    if not (source / ADAPTER_CONFIG_FILE).is_file() or not (source / ADAPTER_FILE).is_file():
        raise EmkitError(f"adapter folder {source} needs {ADAPTER_CONFIG_FILE} and {ADAPTER_FILE}",
                         fix="point to a folder written by `emkit train` (or peft save_pretrained)")
    if target.resolve() == source.resolve():
        raise EmkitError("the ablated adapter must go to a new folder", fix="choose another output folder")
    if target.exists() and any(target.iterdir()):
        if not overwrite:
            raise EmkitError(f"output folder {target} is not empty", fix="choose a new folder or pass overwrite=True")
        shutil.rmtree(target)
    with safe_open(str(source / ADAPTER_FILE), "pt") as handle:
        metadata = handle.metadata() or {}
        names = handle.keys()
        tensors = {name: handle.get_tensor(name) for name in names}

    ablated = {}
    for key, weight in tensors.items():
        if not key.endswith("lora_B.weight") or not any(f".{module}." in key for module in modules):
            continue
        match = LAYER_PATTERN.search(key)
        layer = int(match.group(1)) if match else None
        vector = direction.get(layer) if isinstance(direction, Mapping) else direction
        if vector is None:
            continue
        vector = vector.detach().float().flatten().cpu()
        if vector.shape[0] != weight.shape[0]:
            raise EmkitError(f"direction has width {vector.shape[0]} but {key} writes {weight.shape[0]} dimensions",
                             fix="use a direction from a model with the same hidden size")
        if vector.norm() == 0:
            raise EmkitError("the direction has zero norm", fix="use a non-zero direction")
        tensors[key] = project_out(weight, vector / vector.norm()).to(weight.dtype)
        ablated[key] = layer
    if not ablated:
        raise EmkitError(f"no LoRA B matrix of {', '.join(modules)} in {source} matched the direction's layers",
                         fix="check the adapter's target modules and the direction's layers")

    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(ADAPTER_FILE))
    save_file(tensors, str(target / ADAPTER_FILE), metadata=metadata)
    record = {"source": str(source), "modules": list(modules), "ablated": ablated,
              "per_layer_direction": isinstance(direction, Mapping)}
    (target / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return target
