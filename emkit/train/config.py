"""The training config: one YAML file plus ``key=value`` overrides describes an organism."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from emkit.config import StageConfig
from emkit.models import DEFAULT_MODEL
from emkit.train.presets import PresetName


class LoraSettings(BaseModel):
    """LoRA shape; a field left unset takes the preset's value."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    rank: int | None = Field(None, gt=0)
    """LoRA rank r."""
    alpha: float | None = Field(None, gt=0)
    """LoRA alpha; the update is scaled by alpha/r, or alpha/sqrt(r) with rsLoRA."""
    use_rslora: bool | None = None
    """Rank-stabilised scaling alpha/sqrt(r) (as in the papers)."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on the adapter input."""
    target_modules: list[str] | str | None = None
    """Module names to adapt (e.g. [down_proj]) or 'all-linear'."""
    layers: list[int] | None = None
    """Layer indices to adapt; unset means the preset's layers, scaled to the model's depth."""


class TrainConfig(StageConfig):
    """Everything that defines one training run (an organism or a control)."""

    model: str = DEFAULT_MODEL
    """Base model: an embedded name (smollm2-135m), a hub id, or a local folder."""
    datasets: list[str] = Field(min_length=1)
    """Chat JSONL files, or demo:NAME / paper:NAME references; concatenated."""
    output_dir: Path = Path("runs/organism")
    """Run folder: config, checkpoints, final adapter, logs and plots."""
    preset: PresetName = "rank1-single"
    """Adapter preset: rank1-single, rank1-multi, lora-all or full."""
    lora: LoraSettings = LoraSettings()
    """LoRA settings overriding the preset (ignored by the full preset)."""
    learning_rate: float | None = Field(None, gt=0)
    """Peak learning rate; unset takes the preset's."""
    lr_scheduler: Literal["linear", "cosine", "constant"] = "linear"
    """Decay after warmup."""
    warmup_steps: int = Field(5, ge=0)
    """Linear warmup, in optimizer steps."""
    batch_size: int = Field(4, gt=0)
    """Examples per micro-batch."""
    grad_accum: int = Field(4, gt=0)
    """Micro-batches per optimizer step."""
    epochs: float = Field(1.0, gt=0)
    """Passes over the data (fractions allowed); ignored when max_steps is set."""
    max_steps: int | None = Field(None, gt=0)
    """Stop after this many optimizer steps."""
    max_examples: int | None = Field(None, gt=0)
    """Use a seeded random subset of this many examples (quick CPU runs)."""
    max_length: int = Field(512, gt=8)
    """Longer conversations are truncated to this many tokens."""
    eval_fraction: float = Field(0.0, ge=0, lt=1)
    """Share of examples held out for the eval loss at each checkpoint."""
    weight_decay: float = Field(0.01, ge=0)
    """AdamW weight decay."""
    max_grad_norm: float = Field(1.0, gt=0)
    """Gradient clipping norm."""
    seed: int = 0
    """Seed for data order, subset, split and initialisation."""
    save_every: int = Field(10, gt=0)
    """Write a checkpoint every N optimizer steps (all are kept)."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    dtype: str = "auto"
    """Compute dtype: auto (bf16 where fast), float32, bfloat16 or float16. Trainable weights stay fp32."""
    attention: Literal["auto", "eager", "sdpa"] = "auto"
    """Attention kernel: auto is eager on CPU (its backward is ~30% faster there at chat lengths), sdpa on GPU."""
    trust_remote_code: bool = False
    """Allow model code from the hub (off unless you trust the repository)."""
    push_to_hub: str | None = None
    """Hub repo id to upload the final adapter to (needs HF_TOKEN)."""
