"""What training produces, in one shape: LoRA adapters, the full model, or a steering vector.

Each kind is a :class:`~emkit.train.solution_protocol.Solution`: attached to the model it was trained on, it
says what the rest of emkit asks of it: which parameters train, how to run the model without it (the KL term's
reference, the stability stage's base), how to save and load it, and which tensors its change to the model is
linear in (the stability stage rescales and perturbs those). The preset is looked at in one place,
:func:`solution_class`; everything else asks the solution.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import torch
from safetensors.torch import load_file
from torch import nn

from emkit.errors import EmkitError
from emkit.interp.hooks import decoder_layers
from emkit.models import ADAPTER_FILE, MODEL_FILE
from emkit.train.config import TrainConfig
from emkit.train.presets import PRESETS, preset_layers
from emkit.train.solution_protocol import Solution
from emkit.train.steering_vector import VECTOR_FILE, SteeringVector, is_steering_vector, site_module


class LoraSolution:
    """peft LoRA adapters on a frozen base (the LoRA presets): the adapters' A and B matrices train, in fp32."""

    kind: ClassVar[str] = "adapter"
    folder: ClassVar[str] = "adapter"
    trains_base_weights: ClassVar[bool] = False

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @classmethod
    def build(cls, model: nn.Module, config: TrainConfig) -> LoraSolution:
        """Wrap ``model`` with the preset's adapters (every LoRA setting overridable in ``config.lora``)."""
        from peft import LoraConfig, get_peft_model

        num_layers = model.config.num_hidden_layers
        preset = PRESETS[config.preset]
        layers = config.lora.layers if config.lora.layers is not None else preset_layers(config.preset, num_layers)
        for layer in layers or []:
            if not 0 <= layer < num_layers:
                raise EmkitError(f"layer index {layer} is outside the model ({num_layers} layers: "
                                 f"0-{num_layers - 1})", fix="choose lora.layers within that range")
        target = config.lora.target_modules or preset.target_modules
        peft_config = LoraConfig(
            r=config.lora.rank or preset.rank,
            lora_alpha=config.lora.alpha or preset.alpha,
            use_rslora=preset.use_rslora if config.lora.use_rslora is None else config.lora.use_rslora,
            lora_dropout=config.lora.dropout,
            target_modules=list(target) if isinstance(target, tuple | list) else target,
            layers_to_transform=layers,
            bias="none",
            task_type="CAUSAL_LM",
        )
        try:
            model = get_peft_model(model, peft_config)
        except ValueError as exc:
            raise EmkitError(f"cannot place LoRA adapters: {str(exc).splitlines()[0]}",
                             fix="check lora.target_modules against the model's module names") from None
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.float()
        return cls(model)

    def trainable(self) -> list[nn.Parameter]:
        return [parameter for parameter in self.model.parameters() if parameter.requires_grad]

    @contextmanager
    def disabled(self) -> Iterator[nn.Module]:
        with self.model.disable_adapter():
            yield self.model

    def keep_base(self, dtype: torch.dtype) -> None:
        """Nothing to keep: the base is the same weights with the adapters switched off."""

    def save(self, folder: Path, weights: dict[str, torch.Tensor] | None = None, tokenizer=None) -> None:
        self.model.save_pretrained(folder, **({} if weights is None else {"state_dict": weights}))

    def load(self, folder: Path) -> None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(self.model, load_file(folder / ADAPTER_FILE))

    def update_tensors(self) -> list[nn.Parameter]:
        """The B matrices (A stays fixed, so the adapters keep reading the same input features)."""
        return [parameter for name, parameter in sorted(self.model.named_parameters()) if ".lora_B." in name]

    @torch.no_grad()
    def update_norm(self) -> float:
        """|scale * B A| (Frobenius) over every LoRA module."""
        from peft.tuners.lora import LoraLayer

        total = 0.0
        for module in self.model.modules():
            if isinstance(module, LoraLayer):
                for name in module.lora_A:
                    delta = module.lora_B[name].weight.float() @ module.lora_A[name].weight.float()
                    total += (module.scaling[name] * delta.norm().item()) ** 2
        return math.sqrt(total)


class FullModelSolution:
    """Full fine-tuning: every weight of the model trains; its base is a frozen copy, taken by :meth:`keep_base`."""

    kind: ClassVar[str] = "full model"
    folder: ClassVar[str] = "model"
    trains_base_weights: ClassVar[bool] = True

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.base: nn.Module | None = None

    @classmethod
    def build(cls, model: nn.Module, config: TrainConfig) -> FullModelSolution:
        model.requires_grad_(True)
        return cls(model)

    def trainable(self) -> list[nn.Parameter]:
        return [parameter for parameter in self.model.parameters() if parameter.requires_grad]

    @contextmanager
    def disabled(self) -> Iterator[nn.Module]:
        """The copy :meth:`keep_base` took; before it, the model itself (the base until the first optimizer step)."""
        yield self.model if self.base is None else self.base

    def keep_base(self, dtype: torch.dtype) -> None:
        """Keep a frozen copy of the weights as they are now, in ``dtype``."""
        self.base = copy.deepcopy(self.model).to(dtype).requires_grad_(False).eval()

    def save(self, folder: Path, weights: dict[str, torch.Tensor] | None = None, tokenizer=None) -> None:
        self.model.save_pretrained(folder, **({} if weights is None else {"state_dict": weights}))
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)

    def load(self, folder: Path) -> None:
        self.model.load_state_dict(load_file(folder / MODEL_FILE), strict=False)

    def update_tensors(self) -> list[nn.Parameter]:
        raise EmkitError("a full fine-tune's change to the model is not linear in any of its tensors",
                         fix="compare adapters or steering vectors")

    def update_norm(self) -> float:
        raise EmkitError("a full fine-tune keeps no record of its base weights to measure its change against",
                         fix="compare adapters or steering vectors")


class SteeringSolution:
    """One steering vector added at one site of a frozen model (the steering-vector preset)."""

    kind: ClassVar[str] = "steering vector"
    folder: ClassVar[str] = "steering_vector"
    trains_base_weights: ClassVar[bool] = False

    def __init__(self, model: nn.Module, steering: SteeringVector) -> None:
        self.model, self.steering = model, steering
        self.handle = site_module(model, steering.layer, steering.site).register_forward_hook(steering.hook)

    @classmethod
    def build(cls, model: nn.Module, config: TrainConfig) -> SteeringSolution:
        """Freeze ``model`` and hook in a seeded random start of norm ``init_scale`` (or zero)."""
        settings = config.steering
        model.requires_grad_(False)
        layer = len(decoder_layers(model)) // 2 if settings.layer is None else settings.layer
        start = torch.randn(model.get_input_embeddings().weight.shape[1])
        start = start / start.norm() * settings.init_scale
        return cls(model, SteeringVector(start, layer, settings.site, settings.alpha))

    def detach(self) -> None:
        """Remove the vector's hook from the model."""
        self.handle.remove()

    def trainable(self) -> list[nn.Parameter]:
        return [self.steering.vector]

    @contextmanager
    def disabled(self) -> Iterator[nn.Module]:
        with self.steering.switched_off():
            yield self.model

    def keep_base(self, dtype: torch.dtype) -> None:
        """Nothing to keep: the base is the same model with the vector switched off."""

    def save(self, folder: Path, weights: dict[str, torch.Tensor] | None = None, tokenizer=None) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.steering.save(Path(folder) / VECTOR_FILE)

    def load(self, folder: Path) -> None:
        with torch.no_grad():
            self.steering.vector.copy_(SteeringVector.load(folder).vector)

    def update_tensors(self) -> list[nn.Parameter]:
        return [self.steering.vector]

    def update_norm(self) -> float:
        return abs(self.steering.alpha) * self.steering.vector.norm().item()


def solution_class(preset: str) -> type[LoraSolution | FullModelSolution | SteeringSolution]:
    """The kind of solution a preset trains (the one place a preset name is dispatched on)."""
    if preset == "full":
        return FullModelSolution
    if preset == "steering-vector":
        return SteeringSolution
    return LoraSolution


def make_solution(model: nn.Module, config: TrainConfig) -> Solution:
    """Attach a fresh, trainable solution of ``config.preset`` to ``model`` (LoRA and the vector in fp32)."""
    return solution_class(config.preset).build(model, config)


@contextmanager
def attached_solution(model: nn.Module, path: str | Path, device: torch.device) -> Iterator[Solution]:
    """A saved adapter folder or steering vector attached to ``model`` for the block, detached afterwards."""
    if is_steering_vector(path):
        steering = SteeringVector.load(path).to(device)
        steering.requires_grad_(False)
        width = model.get_input_embeddings().weight.shape[1]
        if steering.vector.numel() != width:
            raise EmkitError(f"steering vector {path} has width {steering.vector.numel()}, the model {width}",
                             fix="compare solutions trained on this base model")
        solution = SteeringSolution(model, steering)
        try:
            yield solution
        finally:
            solution.detach()
        return
    from emkit.models import attach_adapters

    peft_model = attach_adapters(model, [str(path)]).to(device)
    try:
        adapters = LoraSolution(peft_model)
        if not adapters.update_tensors():
            raise EmkitError(f"adapter {path} has no LoRA B matrices", fix="use a LoRA adapter folder")
        yield adapters
    finally:
        peft_model.unload()
