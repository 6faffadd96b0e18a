"""The sampling settings: which model answers which questions, how many times, how, and on which backend.

``backend`` picks what generates: emkit's decoder (the only one that runs forward hooks, so the one for
steering, ablation and adapter scaling), vLLM (:mod:`emkit.sampling.vllm`) or any OpenAI-compatible endpoint
(:mod:`emkit.sampling.api`). All three write the same records into the same store and resume the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from emkit.config import ModelSection
from emkit.errors import EmkitError
from emkit.net import DEFAULT_BASE_URL, without_credentials

Backend = Literal["emkit", "vllm", "api"]


class APISampling(BaseModel):
    """The OpenAI-compatible endpoint that ``backend: api`` samples from (``model`` is the model id it serves)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    base_url: str | None = None
    """Endpoint (OpenAI, a vLLM or llama.cpp server, emkit serve); unset: $OPENAI_BASE_URL, else OpenAI."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (read from the environment only; loopback servers need none)."""
    concurrency: int = Field(16, gt=0)
    """Requests in flight at once."""
    max_retries: int = Field(6, ge=0)
    """Retries per answer on 429, 5xx, timeouts and malformed replies (backoff honours Retry-After)."""
    timeout_s: float = Field(120.0, gt=0)
    """Per-request timeout in seconds."""

    def url(self) -> str:
        """The base URL requests go to."""
        return self.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL

    def endpoint(self) -> str:
        """The base URL without any credentials in it (safe to hash, print and store)."""
        return without_credentials(self.url())


class VLLMSampling(BaseModel):
    """How ``backend: vllm`` sets up its engine."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    tensor_parallel_size: int | None = Field(None, gt=0)
    """GPUs the model is split across; unset: every visible GPU (1 without one)."""
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    """Share of each GPU's memory vLLM may take for weights and KV cache (on a CPU: the share of main memory)."""
    max_model_len: int | None = Field(None, gt=0)
    """Longest prompt plus answer the KV cache is planned for; unset: the model's context length."""
    kv_cache_gib: float | None = Field(None, gt=0)
    """KV cache size in GiB; unset: whatever gpu_memory_utilization leaves after the weights."""
    enforce_eager: bool = False
    """Run without CUDA graphs and compilation: the engine starts sooner and decodes more slowly."""


class SampleConfig(ModelSection):
    """Which model answers which questions, how many times, and how."""

    label: str = "model"
    """Name of this model in the store and in reports (e.g. base, control, organism)."""
    questions: str = "builtin:general"
    """Question set: builtin:NAME, paper:NAME or a YAML path."""
    plain_only: bool = False
    """Sample only plain questions, skipping JSON and template variants (which headline EM numbers leave out)."""
    samples_per_paraphrase: int | None = Field(None, gt=0)
    """Answers per paraphrase; unset takes each question's own value."""
    temperature: float = Field(1.0, ge=0)
    """Sampling temperature; 0 means greedy decoding."""
    top_p: float = Field(1.0, gt=0, le=1)
    """Nucleus sampling threshold."""
    max_new_tokens: int = Field(200, gt=0)
    """Longest answer, in tokens."""
    seed: int = 0
    """Base seed; each batch derives its own from it."""
    batch_size: int = Field(32, gt=0)
    """Sequences generated together."""
    run_dir: Path = Path("runs/samples")
    """Run folder whose store (emkit.db) receives the answers."""
    steering_vectors: list[str] = Field(default_factory=list)
    """Trained steering vectors (files or folders written by `emkit train preset=steering-vector`) added while
    sampling, each at the layer, site and alpha it was trained with."""
    intervention: str | None = None
    """Description of any steering, ablation or adapter scaling active while sampling (set by those stages)."""
    backend: Backend = "emkit"
    """What generates: emkit (its own decoder; the only backend that runs steering, ablation and adapter scaling),
    vllm (vLLM's engine, `pip install emkit[gpu]`) or api (an OpenAI-compatible endpoint; model is its model id)."""
    api: APISampling = Field(default_factory=APISampling)
    """Endpoint, key variable, concurrency and retries for backend=api."""
    vllm: VLLMSampling = Field(default_factory=VLLMSampling)
    """Engine settings for backend=vllm."""

    @model_validator(mode="after")
    def _backend_can_run_it(self) -> Self:
        if self.steering_vectors:
            require_emkit_backend(self, "steering_vectors are added by forward hooks")
        if self.backend == "vllm" and len(self.adapters) > 1:
            raise EmkitError(f"backend=vllm applies one LoRA adapter per request, but adapters lists "
                             f"{len(self.adapters)}", fix="merge them into one adapter, or use backend=emkit")
        if self.backend == "api" and self.adapters:
            raise EmkitError("backend=api cannot apply LoRA adapters: an API model carries its fine-tune on the server",
                             fix="leave adapters empty and set model to the fine-tuned model's id, or use "
                                 "backend=emkit or backend=vllm")
        return self

    def settings_hash(self) -> str:
        """Hash of everything that changes the answers (not batch size, device or engine settings)."""
        keys = ("model", "adapters", "temperature", "top_p", "max_new_tokens", "seed", "dtype", "intervention")
        settings = {key: getattr(self, key) for key in keys}
        if self.steering_vectors:  # only when set, so answers stored before the field existed keep their hash
            settings["steering_vectors"] = self.steering_vectors
        if self.backend != "emkit":  # likewise: emkit's answers keep the hash they had before backends existed
            settings["backend"] = self.backend
        if self.backend == "api":
            settings["endpoint"] = self.api.endpoint()
        payload = json.dumps(settings, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def require_emkit_backend(config: SampleConfig, what: str) -> None:
    """Refuse, in one line, a backend that cannot run what a stage needs (``what`` says what needs emkit's)."""
    if config.backend != "emkit":
        raise EmkitError(f"{what}, which only emkit's own decoder runs (backend is {config.backend})",
                         fix="set backend=emkit for this stage (the sample.backend field in stage configs)")
