"""What a checkpoint is: the folder a run writes every ``save_every`` steps, and the files in it.

A run's ``checkpoints/checkpoint-N/`` holds the solution's weights after step N (``ADAPTER_FILE`` or
``MODEL_FILE`` of :mod:`emkit.models`, or ``VECTOR_FILE`` of :mod:`emkit.train.steering_vector`: each file is
named where its format is), ``OPTIMIZER_FILE``, ``RNG_FILE`` and ``STATE_FILE`` (step, scheduler state, the log
so far). It is written as ``checkpoint-N.partial`` and renamed into place, so a ``checkpoint-N`` folder is
complete once it exists; resuming also requires its ``STATE_FILE``. Readers of other people's runs (the papers'
hub repos hold only adapters) ask instead for the folders holding the weights file they read:
:func:`checkpoint_folders` with ``holding``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from emkit.errors import EmkitError
from emkit.models import MODEL_FILE
from emkit.train.distributed import Processes
from emkit.train.solution_protocol import Solution

OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.safetensors"
STATE_FILE = "state.json"
CHECKPOINT_FOLDER = re.compile(r"checkpoint-(\d+)")
"""A checkpoint folder's name; the number is the optimizer step it was written after."""


def checkpoint_path(folder: Path, step: int) -> Path:
    """Where the checkpoint written after optimizer step ``step`` lives in a run's checkpoints folder."""
    return folder / f"checkpoint-{step}"


def checkpoint_folders(folder: Path, holding: str = STATE_FILE) -> dict[int, Path]:
    """The complete checkpoint folders in ``folder`` (those holding the file ``holding``), by step, ascending."""
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.glob("checkpoint-*"):
        match = CHECKPOINT_FOLDER.fullmatch(path.name)
        if match and (path / holding).is_file():
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def checkpoint_steps(folder: Path) -> list[int]:
    """Steps of the complete checkpoints in a run's checkpoints folder, ascending."""
    return list(checkpoint_folders(folder))


def replace_folder(final: Path, write: Callable[[Path], None]) -> None:
    """Have ``write`` fill a fresh ``final.partial`` folder, then rename it to ``final`` (replacing it whole)."""
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write(partial)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)


def save_checkpoint(folder: Path, step: int, solution: Solution, optimizer_state: dict, scheduler,
                    history: list[dict], weights: dict | None = None) -> None:
    """Write ``folder/checkpoint-{step}`` atomically.

    ``weights`` are a sharded model's gathered weights (with an optimizer state keyed by parameter
    name); unset, the solution's own weights are written.
    """

    def write(partial: Path) -> None:
        solution.save(partial, weights)
        torch.save(optimizer_state, partial / OPTIMIZER_FILE)
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state()
        save_file(rng, partial / RNG_FILE)
        state = {"step": step, "scheduler": scheduler.state_dict(), "history": history,
                 "sharded": weights is not None}
        (partial / STATE_FILE).write_text(json.dumps(state))

    replace_folder(checkpoint_path(folder, step), write)


def restore_latest_checkpoint(folder: Path, solution: Solution, optimizer, scheduler,
                              processes: Processes) -> tuple[int, list[dict]]:
    """Load the newest checkpoint into solution, optimizer, scheduler and RNG; return (step, history)."""
    complete = checkpoint_folders(folder)
    if not complete:
        return 0, []
    path = complete[max(complete)]
    state = json.loads((path / STATE_FILE).read_text())
    if state.get("sharded", False) != processes.sharded:
        launched = "with" if state.get("sharded") else "without"
        raise EmkitError(f"{path} was written by a run launched {launched} FSDP, and its optimizer state is laid "
                         "out for that", fix=f"relaunch {launched} FSDP, or start over in a new output_dir")
    optimizer_state = torch.load(path / OPTIMIZER_FILE, weights_only=True)
    if processes.sharded:
        processes.restore(solution.model, optimizer, load_file(path / MODEL_FILE), optimizer_state)
    else:
        solution.load(path)
        optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(state["scheduler"])
    rng = load_file(path / RNG_FILE)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    return state["step"], state["history"]


def save_weights(solution: Solution, tokenizer, path: Path, weights: dict | None = None) -> None:
    """Save the final weights to the folder ``path`` atomically (``weights``: a sharded model's, gathered)."""
    replace_folder(path, lambda partial: solution.save(partial, weights, tokenizer))
