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

A full fine-tune of a model that does not fit one device is sharded instead (FSDP2's
``fully_shard`` on every decoder layer and on the whole model): launched with accelerate's FSDP
config (``configs/accelerate/fsdp.yaml``, which sets ``ACCELERATE_USE_FSDP``; under torchrun set
that variable yourself), each process holds a shard of the weights, gradients and optimizer state,
the gradients are reduce-scattered by FSDP, and checkpoints and the final weights are
gathered into the same unsharded files a one-process run writes. Of the config's FSDP settings
emkit reads ``fsdp_reshard_after_forward`` and ``fsdp_offload_params``; the wrapping is always per
decoder layer. Adapters and steering vectors are small and train data-parallel.

One process (no launcher, or ``WORLD_SIZE`` 1) uses none of this: accelerate is not imported and
no collective runs.
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
    sharded: bool = False
    """Whether the model's weights, gradients and optimizer state are sharded across the processes (FSDP)."""

    @property
    def main(self) -> bool:
        """Whether this process writes the run's files."""
        return self.rank == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """This process's part of a step's micro-batches."""
        return list(items[self.rank :: self.world])

    def sum_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Replace each parameter's gradient by its sum over all processes (in one flat buffer).

        Sharded, FSDP has already summed them into each process's shard during the backward pass.
        """
        if self.world == 1 or self.sharded:
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


    def shard(self, model: torch.nn.Module) -> torch.nn.Module:
        """Shard a full fine-tune across the processes: every decoder layer, then the rest of the model."""
        from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

        layers = getattr(model.get_decoder(), "layers", None)
        if layers is None:
            raise EmkitError(f"cannot shard {type(model).__name__}: its decoder has no `layers` list to wrap",
                             fix="train it on one process, or launch without FSDP")
        settings = {"reshard_after_forward": _flag("FSDP_RESHARD_AFTER_FORWARD", default=True),
                    "offload_policy": CPUOffloadPolicy() if _flag("FSDP_OFFLOAD_PARAMS") else OffloadPolicy()}
        for layer in layers:
            fully_shard(layer, **settings)
        fully_shard(model, **settings)
        return model

    @property
    def loss_scale(self) -> int:
        """What each process multiplies its loss by before backward, so that the reduced gradients are sums.

        Each process's loss is its share of the step's global sum; data-parallel gradients are summed,
        but FSDP averages them over the processes (gloo has no pre-scaled sum), so sharded processes
        scale their loss up by the number of processes.
        """
        return self.world if self.sharded else 1

    def gather(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
        """The whole model's weights and the optimizer state, on the CPU (every process calls it; process 0 saves)."""
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        # Before the first step there is no optimizer state, and asking for it would take a zero-gradient
        # step to create some (advancing Adam's step count); the fresh optimizer's own state says the same.
        optimizer_state = (get_optimizer_state_dict(model, optimizer, options=_gathered_options()) if optimizer.state
                           else optimizer.state_dict())
        return self.gather_weights(model), optimizer_state

    def gather_weights(self, model: torch.nn.Module) -> dict:
        """The whole model's weights on the CPU, named as a one-process run names them (every process calls it)."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        weights = get_model_state_dict(model, options=_gathered_options())
        # A tied weight (output head = input embeddings) is named once, as in the files a one-process run writes.
        named = {name for name, _ in model.named_parameters()} | {name for name, _ in model.named_buffers()}
        return {name: tensor for name, tensor in weights.items() if name in named}

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, weights: dict,
                optimizer_state: dict) -> None:
        """Load unsharded weights and optimizer state (as :meth:`gather` returned them) into the shards."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(model, weights, options=options)
        if optimizer_state["state"]:  # empty before the first step: the fresh optimizer is that state already
            set_optimizer_state_dict(model, optimizer, optimizer_state, options=options)


def _gathered_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.lower() in ("1", "true")


def join_processes(device: str, preset: str, grad_accum: int) -> Processes:
    """This process's place; with several processes, joins their group (``device`` auto or cpu picks gloo on CPUs).

    ``ACCELERATE_USE_FSDP`` asks for sharding, which only a full fine-tune (``preset``) gets, and which
    needs every process to run as many micro-batches per step (``grad_accum`` a multiple of the processes).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Processes()
    sharded = _flag("ACCELERATE_USE_FSDP")
    if sharded and preset != "full":
        raise EmkitError(f"FSDP shards full fine-tunes, and preset {preset} trains a small adapter or vector that "
                         "every process holds whole", fix="launch without FSDP (data-parallel), or use preset=full")
    if sharded and grad_accum % world:
        raise EmkitError(f"under FSDP every process runs the same micro-batches per step, but grad_accum {grad_accum} "
                         f"does not divide among {world} processes", fix=f"set grad_accum to a multiple of {world}")
    try:
        from accelerate import PartialState
    except ImportError:
        raise EmkitError("training on several processes needs accelerate",
                         fix="pip install 'emkit[gpu]' (or run one process)") from None
    state = PartialState(cpu=device == "cpu" or not torch.cuda.is_available())
    return Processes(state.process_index, state.num_processes, state.device, sharded)
