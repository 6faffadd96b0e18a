"""Sampling answers to question sets through the chat template, into the results store.

All (question, paraphrase, draw) prompts of a run decode together with continuous batching
(:mod:`emkit.decode`); each answer stops at the model's end-of-turn token and is written to the
store the moment it finishes, so an interrupted run loses only the answers still being decoded and
a rerun samples only what is missing.

``backend`` picks what generates: emkit's decoder (the only one that runs forward hooks, so the
one for steering, ablation and adapter scaling), vLLM (:mod:`emkit.sample_vllm`) or any
OpenAI-compatible endpoint (:mod:`emkit.sample_api`). All three write the same records into the
same store and resume the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from emkit.config import StageConfig
from emkit.decode import Generated, decode_stream
from emkit.errors import EmkitError
from emkit.models import DEFAULT_MODEL, LoadedModel, load_model
from emkit.progress import progress_counter
from emkit.questions import Question, load_questions
from emkit.store import SampleRecord, Store

Backend = Literal["emkit", "vllm", "api"]
BACKEND_MODULES = {"vllm": "emkit.sample_vllm", "api": "emkit.sample_api"}
"""The non-default backends, imported only when chosen."""


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
        from emkit.judges.openai import DEFAULT_BASE_URL

        return self.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL

    def endpoint(self) -> str:
        """The base URL without any credentials in it (safe to hash, print and store)."""
        from emkit.judges.openai import _without_credentials

        return _without_credentials(self.url())


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


class SampleConfig(StageConfig):
    """Which model answers which questions, how many times, and how."""

    model: str = DEFAULT_MODEL
    """Base model: an embedded name, a hub id, or a local folder."""
    adapters: list[str] = Field(default_factory=list)
    """LoRA adapter folders applied on top of the base model (all active)."""
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
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    dtype: str = "auto"
    """auto (bf16 where fast), float32, bfloat16 or float16."""
    trust_remote_code: bool = False
    """Allow model code from the hub."""
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


@dataclass(frozen=True)
class PromptItem:
    """One answer to generate: a question paraphrase and the index of the draw."""

    question: Question
    paraphrase_index: int
    sample_index: int

    @property
    def text(self) -> str:
        return self.question.paraphrases[self.paraphrase_index]

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.question.id, self.paraphrase_index, self.sample_index)


def sample(config: SampleConfig, loaded: LoadedModel | None = None, show_progress: bool = True) -> list[SampleRecord]:
    """Sample every missing answer for ``config`` into its run's store; return all stored answers."""
    questions = [question for question in load_questions(config.questions)
                 if question.variant == "plain" or not config.plain_only]
    items = [
        PromptItem(question, p, s)
        for question in questions
        for p in range(len(question.paraphrases))
        for s in range(config.samples_per_paraphrase or question.samples_per_paraphrase)
    ]
    if loaded is not None:  # the caller's model, with whatever hooks it has attached
        require_emkit_backend(config, "sampling a model loaded in this process (as steering, ablation and adapter "
                                      "scaling do) needs its forward hooks")
    settings = config.settings_hash()
    with Store.in_folder(config.run_dir) as store:
        run_hash = store.record_run("sample", config)
        done = store.sample_keys(config.label, settings)
        pending = [item for item in items if item.key not in done]
        if pending:
            for item, out in backend_answers(config, pending, loaded, show_progress):
                store.add_samples([SampleRecord(config.label, settings, item.question.id, item.paraphrase_index,
                                                item.sample_index, item.text, item.question.system, out.answer,
                                                out.finish_reason, out.new_tokens, run_hash)])
        return store.samples(config.label, settings)


def backend_answers(config: SampleConfig, items: list[PromptItem], loaded: LoadedModel | None,
                    show_progress: bool) -> Iterator[tuple[PromptItem, Generated]]:
    """Each item with its answer, as soon as it is finished, from the backend ``config`` chooses."""
    if config.backend != "emkit":
        yield from importlib.import_module(BACKEND_MODULES[config.backend]).generate_answers(config, items,
                                                                                             show_progress)
        return
    loaded = loaded or load_model(config.model, config.adapters, config.device, config.dtype, config.trust_remote_code)
    with steering_vectors_attached(loaded.model, config.steering_vectors):
        yield from generate_answers(loaded, items, config, show_progress)


def item_seed(seed: int, item: PromptItem) -> int:
    """A per-answer seed for backends that seed each request: fixed by the run's seed and the answer's key alone,
    so a resumed run draws what an uninterrupted one would have."""
    digest = hashlib.sha256(json.dumps([seed, *item.key]).encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


@contextlib.contextmanager
def steering_vectors_attached(model: torch.nn.Module, paths: list[str]) -> Iterator[None]:
    """Add every trained steering vector in ``paths`` to ``model`` while the block runs."""
    from emkit.train.steering_vector import apply_steering_vector

    with contextlib.ExitStack() as stack:
        for path in paths:
            stack.enter_context(apply_steering_vector(model, path))
        yield


def generate_answers(loaded: LoadedModel, items: list[PromptItem], config: SampleConfig,
                     show_progress: bool) -> Iterator[tuple[PromptItem, Generated]]:
    """Yield each item with its answer as soon as it is finished (prompts of similar length join together)."""
    rendered = [render_prompt(loaded.tokenizer, item.text, item.question.system) for item in items]
    order = sorted(range(len(items)), key=lambda index: len(rendered[index]))
    stream = decode_stream(loaded, [rendered[index] for index in order], config.temperature, config.top_p,
                           config.max_new_tokens, config.seed, config.batch_size)
    with progress_counter(len(items), show_progress, f"sample {config.label}") as advance:
        for position, generated in stream:
            yield items[order[position]], generated
            advance(1)


def render_prompt(tokenizer, question: str, system: str | None = None) -> str:
    """The chat-templated prompt, ending where the assistant's answer begins."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
