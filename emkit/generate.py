"""Sampling answers to question sets through the chat template, into the results store.

All (question, paraphrase, draw) prompts of a run decode together with continuous batching
(:mod:`emkit.decode`); each answer stops at the model's end-of-turn token and is written to the
store the moment it finishes, so an interrupted run loses only the answers still being decoded and
a rerun samples only what is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import Field

from emkit.config import StageConfig
from emkit.decode import Generated, decode_stream
from emkit.models import DEFAULT_MODEL, LoadedModel, load_model
from emkit.progress import progress_counter
from emkit.questions import Question, load_questions
from emkit.store import SampleRecord, Store


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

    def settings_hash(self) -> str:
        """Hash of everything that changes the answers (not batch size or device)."""
        keys = ("model", "adapters", "temperature", "top_p", "max_new_tokens", "seed", "dtype", "intervention")
        settings = {key: getattr(self, key) for key in keys}
        if self.steering_vectors:  # only when set, so answers stored before the field existed keep their hash
            settings["steering_vectors"] = self.steering_vectors
        payload = json.dumps(settings, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


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
    settings = config.settings_hash()
    with Store.in_folder(config.run_dir) as store:
        run_hash = store.record_run("sample", config)
        done = store.sample_keys(config.label, settings)
        pending = [item for item in items if item.key not in done]
        if pending:
            loaded = loaded or load_model(config.model, config.adapters, config.device, config.dtype,
                                          config.trust_remote_code)
            with steering_vectors_attached(loaded.model, config.steering_vectors):
                for item, out in generate_answers(loaded, pending, config, show_progress):
                    store.add_samples([SampleRecord(config.label, settings, item.question.id, item.paraphrase_index,
                                                    item.sample_index, item.text, item.question.system, out.answer,
                                                    out.finish_reason, out.new_tokens, run_hash)])
        return store.samples(config.label, settings)


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
