"""What the rest of emkit asks of a trained solution, whatever its shape: the :class:`Solution` protocol.

Its three kinds (LoRA adapters, the full model, a steering vector) are in :mod:`emkit.train.solutions`; the
loop, the checkpoints, the KL term and the stability stage ask only this of them.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import ClassVar, Protocol

import torch
from torch import nn


class Solution(Protocol):
    """A trained (or training) solution attached to its base model."""

    kind: ClassVar[str]
    """What it is, in words: adapter, full model or steering vector."""
    folder: ClassVar[str]
    """The name of a run's folder for its final weights."""
    trains_base_weights: ClassVar[bool]
    """Whether the base model's own weights train (then they load in fp32; otherwise in the compute dtype)."""
    model: nn.Module
    """What a forward pass runs: the peft model, the model itself, or the base model with the vector hooked in."""

    def trainable(self) -> list[nn.Parameter]:
        """The parameters the optimizer updates, in a fixed order."""

    def disabled(self) -> AbstractContextManager[nn.Module]:
        """A block in which the yielded module computes the base model, without the solution."""

    def keep_base(self, dtype: torch.dtype) -> None:
        """Make :meth:`disabled` independent of later training (a full fine-tune copies its weights)."""

    def save(self, folder: Path, weights: dict[str, torch.Tensor] | None = None, tokenizer=None) -> None:
        """Write the solution's files into ``folder`` (``weights``: a sharded model's, gathered; ``tokenizer``:
        saved beside a full model, so that the folder loads as a model)."""

    def load(self, folder: Path) -> None:
        """Set the solution's weights to those saved in ``folder``."""

    def update_tensors(self) -> list[nn.Parameter]:
        """The tensors x the solution's change to the model is linear in (s * x scales the whole change)."""

    def update_norm(self) -> float:
        """The size of the solution's change to the model (Frobenius norm of the weight change, or |alpha * v|)."""
