"""Batched sampling through the chat template, into the results store.

Answers to many questions are generated together (left padding, prompts of similar length
batched together), each sequence stops at the model's end-of-turn token, and every finished
batch is written to the store at once, so an interrupted run loses at most one batch and a
rerun samples only what is missing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import Field

from emkit.config import StageConfig
from emkit.models import DEFAULT_MODEL, LoadedModel, load_model
from emkit.progress import progress_counter
from emkit.questions import Question, load_questions
from emkit.store import SampleRecord, Store

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")


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
    intervention: str | None = None
    """Description of any steering, ablation or adapter scaling active while sampling (set by those stages)."""

    def settings_hash(self) -> str:
        """Hash of everything that changes the answers (not batch size or device)."""
        keys = ("model", "adapters", "temperature", "top_p", "max_new_tokens", "seed", "dtype", "intervention")
        payload = json.dumps({key: getattr(self, key) for key in keys}, sort_keys=True, default=str)
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


@dataclass(frozen=True)
class Generated:
    answer: str
    finish_reason: str
    new_tokens: int


def sample(config: SampleConfig, loaded: LoadedModel | None = None, show_progress: bool = True) -> list[SampleRecord]:
    """Sample every missing answer for ``config`` into its run's store; return all stored answers."""
    questions = load_questions(config.questions)
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
            for batch, outputs in generate_batches(loaded, pending, config, show_progress):
                store.add_samples([
                    SampleRecord(config.label, settings, item.question.id, item.paraphrase_index,
                                 item.sample_index, item.text, item.question.system, out.answer,
                                 out.finish_reason, out.new_tokens, run_hash)
                    for item, out in zip(batch, outputs, strict=True)
                ])
        return store.samples(config.label, settings)


def generate_batches(loaded: LoadedModel, items: list[PromptItem], config: SampleConfig, show_progress: bool):
    """Yield (batch, outputs) pairs; prompts of similar length share a batch."""
    tokenizer = loaded.tokenizer
    rendered = [render_prompt(tokenizer, item.text, item.question.system) for item in items]
    order = sorted(range(len(items)), key=lambda index: len(rendered[index]))
    batches = [order[start : start + config.batch_size] for start in range(0, len(order), config.batch_size)]
    with progress_counter(len(items), show_progress, f"sample {config.label}") as advance:
        for indices in batches:
            seed_material = f"{config.seed}:{items[indices[0]].key}".encode()
            seed = int.from_bytes(hashlib.sha256(seed_material).digest()[:4], "little")
            outputs = generate_texts(loaded, [rendered[i] for i in indices], config.temperature, config.top_p,
                                     config.max_new_tokens, seed)
            advance(len(indices))
            yield [items[i] for i in indices], outputs


def render_prompt(tokenizer, question: str, system: str | None = None) -> str:
    """The chat-templated prompt, ending where the assistant's answer begins."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def stop_token_ids(tokenizer, model) -> list[int]:
    """End-of-sequence and end-of-turn ids: generation stops at whichever comes first."""
    ids = set()
    configured = model.generation_config.eos_token_id
    ids.update(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in END_OF_TURN_TOKENS if token in vocab)
    return sorted(ids)


@torch.inference_mode()
def generate_texts(loaded: LoadedModel, prompts: list[str], temperature: float, top_p: float,
                   max_new_tokens: int, seed: int) -> list[Generated]:
    """Generate one answer per rendered prompt, in one left-padded batch."""
    tokenizer, model = loaded.tokenizer, loaded.model
    tokenizer.padding_side = "left"
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(loaded.device)
    stops = stop_token_ids(tokenizer, model)
    torch.manual_seed(seed)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0} if temperature > 0 else {
        "do_sample": False}
    output = model.generate(**encoded, max_new_tokens=max_new_tokens, eos_token_id=stops,
                            pad_token_id=tokenizer.pad_token_id, **sampling)
    new = output[:, encoded["input_ids"].shape[1]:].tolist()
    results = []
    for tokens in new:
        end = next((i for i, token in enumerate(tokens) if token in stops), None)
        kept = tokens if end is None else tokens[:end]
        answer = tokenizer.decode(kept, skip_special_tokens=True).strip()
        results.append(Generated(answer, "length" if end is None else "stop", len(kept)))
    return results
