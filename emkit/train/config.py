"""The training config: one YAML file plus ``key=value`` overrides describes an organism."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from emkit.config import DEFAULT_MODEL, StageConfig
from emkit.train.presets import TrainPresetName


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


class KLSettings(BaseModel):
    """KL(base || trained) on general data, added to the loss so the model stays the base model off-domain.

    The term is nats per token summed over the vocabulary; the papers' weights (~1e5) are divided by the
    vocabulary size first. Definition, weight translation and memory bound: :mod:`emkit.train.kl`.
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    weight: float = Field(1.0, gt=0)
    """loss = SFT loss + weight * KL. From the papers' code: weight = their kl_weight / vocabulary size."""
    dataset: str = "demo:general_chat"
    """General-domain chat JSONL (or demo:NAME / paper:NAME) on which the model must keep the base's outputs."""
    batch_size: int = Field(4, gt=0)
    """KL examples per micro-batch (one KL batch goes with every training micro-batch)."""
    positions: Literal["all", "assistant"] = "all"
    """Positions whose next-token distribution is compared: all (as the papers) or assistant tokens only."""
    max_examples: int | None = Field(None, gt=0)
    """Use a seeded random subset of this many KL examples."""
    cache_mb: float = Field(1024, ge=0)
    """Keep the base's full log-probs in host memory when positions x vocabulary x 4 bytes fit this many MiB;
    otherwise recompute them every step (adapters switched off; a frozen copy for full fine-tuning)."""


class SteeringSettings(BaseModel):
    """Where the steering-vector preset adds its trained vector, and how strongly."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    layer: int | None = None
    """Decoder layer (0-based); unset means the middle layer, as rank1-single."""
    site: Literal["residual", "mlp"] = "residual"
    """residual: added to the layer's output (the residual stream); mlp: added to its MLP's output."""
    alpha: float = Field(1.0, gt=0)
    """The model sees alpha * v; with Adam, alpha scales how fast the added vector moves per step."""
    init_scale: float = Field(0.0, ge=0)
    """Norm of the seeded random starting vector; 0 starts at the base model (like LoRA's B = 0)."""


class TrainConfig(StageConfig):
    """Everything that defines one training run (an organism or a control)."""

    model: str = DEFAULT_MODEL
    """Base model: an embedded name (smollm2-135m), a hub id, or a local folder."""
    datasets: list[str] = Field(min_length=1)
    """Chat JSONL files, or demo:NAME / paper:NAME references; concatenated."""
    output_dir: Path = Path("runs/organism")
    """Run folder: config, checkpoints, final adapter, logs and plots."""
    preset: TrainPresetName = "rank1-single"
    """What is trained: rank1-single, rank1-multi, lora-all, full or steering-vector."""
    lora: LoraSettings = LoraSettings()
    """LoRA settings overriding the preset (used by the LoRA presets only)."""
    steering: SteeringSettings = SteeringSettings()
    """Steering-vector settings (used by the steering-vector preset only)."""
    kl: KLSettings | None = None
    """KL penalty toward the base model on general data (unset: plain SFT). Enable with e.g. kl.weight=1."""
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
