"""Tensors plus a JSON header in one safetensors file: how emkit saves activations and directions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from emkit.errors import EmkitError


def save_with_header(path: str | Path, tensors: dict[str, torch.Tensor], key: str, header: dict[str, Any]) -> Path:
    """Write ``tensors`` with ``header`` as JSON under metadata ``key`` (no pickle anywhere)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, str(path),
              metadata={key: json.dumps(header)})
    return path


def load_with_header(path: str | Path, key: str, kind: str, writer: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by :func:`save_with_header`; one clear error when it is missing or of another kind."""
    path = Path(path)
    if not path.is_file():
        raise EmkitError(f"{kind} file not found", fix="check the path", where=path)
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata() or {}
        if key not in metadata:
            raise EmkitError(f"not an emkit {kind} file (no {key} metadata)", fix=f"write it with {writer}",
                             where=path)
        return {name: handle.get_tensor(name) for name in handle.keys()}, json.loads(metadata[key])  # noqa: SIM118
