"""A trained run as the dynamics stages read it: its base model, its adapter, and answers sampled with each
checkpoint's adapter or with the adapter's B vectors scaled (one base model loaded, weights swapped in)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml
from safetensors.torch import load_file, save_file

from emkit.dynamics.checkpoints import local_checkpoints, select_steps
from emkit.errors import EmkitError
from emkit.models import ADAPTER_CONFIG_FILE, ADAPTER_FILE, LoadedModel
from emkit.records import SampleRecord
from emkit.sampling.config import SampleConfig
from emkit.stages import sample


def run_base_model(folder: str | Path) -> str | None:
    """The base model a run was trained on, from the config.yaml of the run holding ``folder``.

    ``folder`` may be the run, its adapter/ or checkpoints/ folder, or one checkpoint; an adapter
    without an emkit run around it falls back to peft's ``base_model_name_or_path``.
    """
    folder = Path(folder).expanduser()
    for candidate in (folder, *list(folder.parents)[:2]):
        config = candidate / "config.yaml"
        if config.is_file():
            data = yaml.safe_load(config.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "datasets" in data and data.get("model"):
                return str(data["model"])
    adapter_config = folder / ADAPTER_CONFIG_FILE
    if adapter_config.is_file():
        return json.loads(adapter_config.read_text()).get("base_model_name_or_path")
    return None


def with_run_defaults(config: SampleConfig, run: Path, store_in_run: bool = False) -> SampleConfig:
    """``config`` with the run's base model where no model was given (and the run's store, if asked)."""
    update: dict[str, object] = {}
    if "model" not in config.model_fields_set:
        model = run_base_model(run)
        if model:
            update["model"] = model
    if store_in_run and "run_dir" not in config.model_fields_set:
        update["run_dir"] = run
    return config.model_copy(update=update)


def resolve_adapter(path: str | Path) -> Path:
    """An adapter folder, given itself or a run folder holding adapter/."""
    folder = Path(path).expanduser()
    if not (folder / ADAPTER_CONFIG_FILE).is_file() and (folder / "adapter" / ADAPTER_CONFIG_FILE).is_file():
        folder = folder / "adapter"
    if not (folder / ADAPTER_CONFIG_FILE).is_file() or not (folder / ADAPTER_FILE).is_file():
        raise EmkitError(f"{path} holds no peft adapter ({ADAPTER_CONFIG_FILE} and {ADAPTER_FILE})",
                         fix="point to a LoRA run folder or an adapter folder")
    return folder


def final_adapter(run: Path) -> Path:
    """The run's final adapter, or its last checkpoint while it has none."""
    if (run / "adapter" / ADAPTER_FILE).is_file():
        return resolve_adapter(run)
    checkpoints = local_checkpoints(run)
    return checkpoints[max(checkpoints)]


def write_scaled_adapter(adapter: str | Path, factor: float, output: Path) -> Path:
    """Copy an adapter with every lora_B weight multiplied by ``factor`` (same as scaling its scalars)."""
    source = resolve_adapter(adapter)
    weights = load_file(source / ADAPTER_FILE)
    scaled = {key: tensor * factor if ".lora_B." in key else tensor for key, tensor in weights.items()}
    output.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / ADAPTER_CONFIG_FILE, output / ADAPTER_CONFIG_FILE)
    save_file(scaled, output / ADAPTER_FILE)
    return output


def sample_checkpoints(run: str | Path, config: SampleConfig, steps: Sequence[int] | None = None, every: int = 1,
                       show_progress: bool = False) -> dict[int, list[SampleRecord]]:
    """Sample ``config``'s questions with each chosen checkpoint's adapter, labelled ``ckpt-N`` in the store.

    ``steps`` names the checkpoints; otherwise every ``every``-th one is used, and always the last
    (the trained organism). The base model loads once and each checkpoint's weights are swapped in.
    """
    available = local_checkpoints(run)
    if steps is not None:
        chosen = select_steps(available, steps, run)
    else:
        last = max(available)
        chosen = dict(list(available.items())[:: max(1, every)]) | {last: available[last]}
    samples = sample_adapters({f"ckpt-{step}": folder for step, folder in chosen.items()}, config, show_progress)
    return {step: samples[f"ckpt-{step}"] for step in chosen}


def sample_scaled(adapter: str | Path, factors: Sequence[float], config: SampleConfig, scratch: Path | None = None,
                  show_progress: bool = False) -> dict[float, list[SampleRecord]]:
    """Sample with the adapter's B vectors scaled by each factor, labelled ``scale-F`` in the store.

    The scaled copies go to ``scratch`` (default: a scaled/ folder beside the adapter, inside the run);
    each factor is recorded as the samples' intervention, so stored answers never mix scales.
    """
    source = resolve_adapter(adapter)
    scratch = scratch or source.parent / "scaled"
    folders = {f"scale-{factor:g}": write_scaled_adapter(source, factor, scratch / f"{source.name}-scale-{factor:g}")
               for factor in factors}
    interventions = {f"scale-{factor:g}": f"scale-lora-B={factor:g}" for factor in factors}
    samples = sample_adapters(folders, config, show_progress, interventions)
    return {factor: samples[f"scale-{factor:g}"] for factor in factors}


def sample_adapters(folders: Mapping[str, Path], config: SampleConfig, show_progress: bool = False,
                    interventions: Mapping[str, str] | None = None) -> dict[str, list[SampleRecord]]:
    """Sample once per adapter folder (label -> folder) with one loaded base model.

    ``interventions`` (label -> description) marks samples taken under a modified adapter.
    """
    if config.adapters:
        raise EmkitError("the sample config already names adapters; checkpoint sampling sets its own",
                         fix="leave adapters empty in the sample config")
    loaded: LoadedModel | None = None
    results = {}
    for label, folder in folders.items():
        if loaded is None:
            loaded = config.load_model([folder])
        else:
            swap_adapter_weights(loaded, folder)
        update = {"adapters": [str(folder)], "label": label}
        if interventions and label in interventions:
            update["intervention"] = interventions[label]
        stage = config.model_copy(update=update)
        results[label] = sample.run(stage, show_progress, loaded=loaded)
    return results


def swap_adapter_weights(loaded: LoadedModel, folder: Path) -> None:
    """Load another checkpoint of the same adapter into the model in place (no reload of the base model)."""
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(loaded.model, load_file(folder / ADAPTER_FILE), adapter_name="adapter0")
    if result.unexpected_keys:
        raise EmkitError(f"adapter in {folder} does not match the first one ({result.unexpected_keys[0]})",
                         fix="sample checkpoints of one run at a time")
