"""Data-parallel training over several processes (``accelerate launch`` or ``torchrun``).

When the launcher starts more than one process (``WORLD_SIZE`` > 1), accelerate's
``PartialState`` joins them into one process group (NCCL between GPUs, gloo on CPUs) and gives
each its device. Every process builds the same model from the same seed and computes the same
step schedule; the step's micro-batches are dealt out round-robin (process r takes micro-batches
r, r + N, ...), each process backpropagates its share divided by the step's *global* token count,
and the gradients are summed across processes before clipping and the optimizer step. The sum is
the gradient one process would have computed over the whole step, so a run on N processes ends
with the weights of a one-process run with the same global batch (up to floating-point summation
order). Only process 0 writes checkpoints, logs and the final weights; every process resumes from
the newest checkpoint.

One process (no launcher, or ``WORLD_SIZE`` 1) uses none of this: accelerate is not imported and
no collective runs. Sharding a model that does not fit one device (FSDP) is not supported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from emkit.errors import EmkitError

T = TypeVar("T")


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes."""

    rank: int = 0
    world: int = 1
    device: torch.device | None = None
    """The device the launcher assigned to this process; None for a single process (the config's device)."""

    @property
    def main(self) -> bool:
        """Whether this process writes the run's files."""
        return self.rank == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """This process's part of a step's micro-batches."""
        return list(items[self.rank :: self.world])

    def sum_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Replace each parameter's gradient by its sum over all processes (in one flat buffer)."""
        if self.world == 1:
            return
        for parameter in parameters:
            if parameter.grad is None:  # no micro-batch reached it here; another process may have
                parameter.grad = torch.zeros_like(parameter)
        flat = torch.cat([parameter.grad.flatten() for parameter in parameters])
        torch.distributed.all_reduce(flat)
        offset = 0
        for parameter in parameters:
            count = parameter.grad.numel()
            parameter.grad.copy_(flat[offset : offset + count].view_as(parameter.grad))
            offset += count

    def sum_floats(self, values: list[float]) -> list[float]:
        """Each number summed over all processes (for the step's logged losses)."""
        if self.world == 1:
            return values
        totals = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(totals)
        return totals.tolist()

    def wait(self) -> None:
        """Block until every process gets here (after process 0 has written files the others will read)."""
        if self.world > 1:
            torch.distributed.barrier()


def join_processes(device: str) -> Processes:
    """This process's place; with several processes, joins their group (``device`` auto or cpu picks gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Processes()
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        raise EmkitError("emkit trains data-parallel (every process holds the whole model); FSDP sharding is not "
                         "supported", fix="launch without --use_fsdp (or an FSDP config file)")
    try:
        from accelerate import PartialState
    except ImportError:
        raise EmkitError("training on several processes needs accelerate",
                         fix="pip install 'emkit[gpu]' (or run one process)") from None
    state = PartialState(cpu=device == "cpu" or not torch.cuda.is_available())
    return Processes(state.process_index, state.num_processes, state.device)
