"""Read the LoRA A and B vectors of every checkpoint of a run, as tensors indexed by step.

A run's checkpoints live in ``checkpoint-N`` folders (``output_dir/checkpoints/`` for emkit runs,
any subfolder of a hub repo for the papers' published runs), each holding a peft adapter
(:mod:`emkit.train.checkpoints` defines the folders and files). Only the adapter's safetensors are
read, never pickles. For a rank-1 adapter, lora_A [1, d_in] and lora_B [d_out, 1] become vectors
of d_in and d_out; a higher-rank matrix is flattened.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import torch
from safetensors.torch import load_file

from emkit.errors import EmkitError
from emkit.models import ADAPTER_FILE
from emkit.train.checkpoints import CHECKPOINT_FOLDER, checkpoint_folders

HUB_CHECKPOINT_FILE = re.compile(rf"(?:^|/){CHECKPOINT_FOLDER.pattern}/{re.escape(ADAPTER_FILE)}$")
LORA_KEY = re.compile(r"^(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$")
LAYER_PATH = re.compile(r"(?:^|\.)(layers\.\d+\..+)$")

Which = Literal["A", "B"]
T = TypeVar("T")


@dataclass
class CheckpointVectors:
    """A run's adapter vectors: ``a[module]`` is [steps, d_in], ``b[module]`` is [steps, d_out]."""

    steps: list[int]
    a: dict[str, torch.Tensor]
    b: dict[str, torch.Tensor]
    source: str

    @property
    def modules(self) -> list[str]:
        return list(self.b)

    def vectors(self, which: Which = "B", modules: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """The A or B vectors of the chosen modules (all by default), in layer order."""
        table = self.a if which == "A" else self.b
        if modules is None:
            return dict(table)
        chosen = list(modules)
        missing = [name for name in chosen if name not in table]
        if missing:
            raise EmkitError(f"no adapter on module(s) {', '.join(missing)} in {self.source}",
                             fix=f"choose from {', '.join(table)}")
        return {name: table[name] for name in chosen}


def module_name(full_name: str) -> str:
    """Short module name shared by checkpoints, hooks and tables, e.g. ``layers.15.mlp.down_proj``."""
    match = LAYER_PATH.search(full_name)
    if match:
        return match.group(1)
    name = full_name.removeprefix("base_model.model.")
    return name.removeprefix("model.")


def layer_order(name: str) -> tuple:
    """Sort key putting layers.2 before layers.10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def local_checkpoints(run: str | Path) -> dict[int, Path]:
    """Adapter checkpoint folders of a local run (its folder or its checkpoints/ folder), by step."""
    root = Path(run).expanduser()
    folder = root / "checkpoints" if (root / "checkpoints").is_dir() else root
    found = checkpoint_folders(folder, holding=ADAPTER_FILE)
    if not found:
        raise EmkitError(f"no adapter checkpoints (checkpoint-N/{ADAPTER_FILE}) under {folder}",
                         fix="point to a LoRA run folder written with save_every set (full fine-tunes have none)")
    return found


def read_checkpoints(source: str | Path, steps: Iterable[int] | None = None,
                     revision: str | None = None) -> CheckpointVectors:
    """Every checkpoint's A and B vectors from a local run folder, or from a hub repo id (org/name).

    ``steps`` restricts reading (and downloading) to those checkpoints, e.g. every tenth; ``revision``
    picks a hub branch or commit.
    """
    path = Path(source).expanduser()
    if path.exists():
        available = {step: folder / ADAPTER_FILE for step, folder in local_checkpoints(path).items()}
        files = select_steps(available, steps, source)
    elif isinstance(source, str) and source.count("/") == 1 and not source.startswith((".", "/", "~")):
        hub = import_hub()
        names = select_steps(hub_checkpoint_names(hub, source, revision), steps, source)
        files = {step: download(hub, source, name, revision) for step, name in names.items()}
    else:
        raise EmkitError(f"run '{source}' not found", fix="give a local run folder or a hub repo id like org/name")
    per_step = {step: read_adapter_vectors(file) for step, file in files.items()}
    first_a, first_b = next(iter(per_step.values()))
    modules = sorted(first_b, key=layer_order)
    for step, (a, b) in per_step.items():
        if a.keys() != first_a.keys() or b.keys() != first_b.keys():
            raise EmkitError(f"checkpoint {step} adapts other modules than checkpoint {next(iter(per_step))}",
                             where=files[step], fix="read checkpoints of one run only")
    return CheckpointVectors(
        steps=list(per_step),
        a={name: torch.stack([a[name] for a, _ in per_step.values()]) for name in sorted(first_a, key=layer_order)},
        b={name: torch.stack([b[name] for _, b in per_step.values()]) for name in modules},
        source=str(source),
    )


def select_steps(available: Mapping[int, T], steps: Iterable[int] | None, source: str | Path) -> dict[int, T]:
    """The wanted subset of ``available`` (all by default), ascending; unknown steps are an error."""
    if steps is None:
        return dict(sorted(available.items()))
    wanted = sorted(set(steps))
    missing = [step for step in wanted if step not in available]
    if missing:
        raise EmkitError(f"no checkpoint for step(s) {missing} in {source}", fix=f"choose from {sorted(available)}")
    return {step: available[step] for step in wanted}


def read_adapter_vectors(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(A vectors, B vectors) by module name from one adapter weights file, as float32."""
    a, b = {}, {}
    for key, tensor in load_file(file).items():
        match = LORA_KEY.match(key)
        if match:
            (a if match.group(2) == "A" else b)[module_name(match.group(1))] = tensor.float().flatten()
    if not b:
        raise EmkitError("adapter file holds no lora_A/lora_B weights", where=file,
                         fix="point to a peft LoRA adapter")
    return a, b


def import_hub():
    """huggingface_hub, imported only when a hub run is read."""
    try:
        import huggingface_hub
    except ImportError:
        raise EmkitError("reading checkpoints from the hub needs huggingface_hub",
                         fix="pip install 'emkit[hub]', or download the run and pass its folder") from None
    return huggingface_hub


def hub_checkpoint_names(hub, repo_id: str, revision: str | None) -> dict[int, str]:
    """Paths of the checkpoint-N adapter files in a hub repo, by step."""
    try:
        listing = hub.list_repo_files(repo_id, revision=revision)
    except Exception as exc:  # the hub client raises many transport and HTTP error types
        raise hub_error(repo_id, exc) from None
    remote: dict[int, str] = {}
    for name in listing:
        match = HUB_CHECKPOINT_FILE.search(name)
        if match:
            step = int(match.group(1))
            if step in remote:
                raise EmkitError(f"hub repo {repo_id} holds checkpoint-{step} in two folders "
                                 f"({remote[step]} and {name})", fix="download the run you want and pass its folder")
            remote[step] = name
    if not remote:
        raise EmkitError(f"hub repo {repo_id} has no checkpoint-N/{ADAPTER_FILE} files",
                         fix="check the repo id (the papers publish checkpoints in separate repos)")
    return remote


def download(hub, repo_id: str, name: str, revision: str | None) -> Path:
    try:
        return Path(hub.hf_hub_download(repo_id, name, revision=revision))
    except Exception as exc:  # as in hub_checkpoint_names
        raise hub_error(repo_id, exc) from None


def hub_error(repo_id: str, exc: Exception) -> EmkitError:
    """A one-line error telling an unreadable repo apart from an unreachable hub."""
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if type(exc).__name__ in ("RepositoryNotFoundError", "RevisionNotFoundError", "GatedRepoError"):
        return EmkitError(f"hub repo {repo_id} is not readable ({detail})",
                          fix="check the id and revision, or log in with HF_TOKEN for private repos")
    return EmkitError(f"cannot reach the Hugging Face hub for {repo_id} ({detail})",
                      fix="check the network (HF_ENDPOINT, HF_HUB_OFFLINE), or download the run and pass its folder")
