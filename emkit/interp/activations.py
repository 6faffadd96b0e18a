"""Residual-stream activations of (question, answer) pairs, pooled over the answer tokens.

Each pair is rendered through the model's chat template (user question, assistant answer) and
run in one forward pass per batch. Layer L is the output of decoder layer L (0-based; the
embeddings are not a layer), read by forward hooks, so the last layer is the residual stream
before the final norm, like every other layer. Only the answer's own tokens are pooled (not the
question, not the template's markers): ``mean`` over them (the papers' way), the ``last`` one
(the course replication's way), or ``tokens`` to keep each one. Pooling happens inside the hook,
batch by batch, so memory holds only the pooled result unless per-token values are asked for.
Batches are right-padded and sorted by length (longest first, so an out-of-memory error comes at
once); with causal attention the padding cannot change the real tokens' activations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from emkit.errors import EmkitError
from emkit.interp.files import load_with_header, save_with_header
from emkit.interp.hooks import decoder_layers, hidden_of
from emkit.models import LoadedModel
from emkit.train.tokenize import assistant_char_spans

Pooling = Literal["mean", "last", "tokens"]


@dataclass
class ActivationSet:
    """Activations of n answers: ``values`` is [n, layers, d] float32, or [tokens, layers, d] for ``tokens``
    pooling, where ``token_counts`` (answer tokens per example) says which rows belong to which answer."""

    values: torch.Tensor
    layers: list[int]
    pooling: str
    model: str
    token_counts: torch.Tensor
    description: str = ""

    def __len__(self) -> int:
        return len(self.token_counts)

    def per_example(self) -> list[torch.Tensor]:
        """Per-token activations split by answer: a list of [tokens_i, layers, d]."""
        if self.pooling != "tokens":
            raise EmkitError(f"these activations are pooled ({self.pooling}), not kept per token",
                             fix="collect them with pooling='tokens'")
        return list(torch.split(self.values, self.token_counts.tolist()))

    def save(self, path: str | Path) -> Path:
        """Write as safetensors, the settings in its metadata (no pickle, loads lazily elsewhere)."""
        header = {"layers": self.layers, "pooling": self.pooling, "model": self.model,
                  "description": self.description}
        return save_with_header(path, {"values": self.values, "token_counts": self.token_counts},
                                "emkit_activations", header)

    @classmethod
    def load(cls, path: str | Path) -> ActivationSet:
        """Read a set written by :meth:`save`."""
        tensors, header = load_with_header(path, "emkit_activations", "activation", "ActivationSet.save")
        return cls(tensors["values"], header["layers"], header["pooling"], header["model"],
                   tensors["token_counts"], header["description"])


@dataclass
class _Encoded:
    input_ids: list[int]
    answer_mask: list[bool]


def encode_pair(tokenizer, question: str, answer: str, system: str | None = None,
                max_length: int | None = None) -> tuple[list[int], list[bool]]:
    """Token ids of the templated conversation and a mask of the answer's own tokens."""
    conversation = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    text, spans = assistant_char_spans(tokenizer, conversation)
    span_start, span_end = spans[-1]
    content = answer.strip()
    found = text.find(content, span_start, span_end)
    if not content:
        start = end = span_start
    elif found >= 0:
        start, end = found, found + len(content)
    else:  # A template that rewrites the content leaves only the whole assistant turn to pool over.
        start, end = span_start, span_end
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"][:max_length]
    mask = [token_end > start and token_start < end
            for token_start, token_end in encoded["offset_mapping"][: len(ids)]]
    return ids, mask


class _StopForward(Exception):
    """Raised by the hook of the deepest wanted layer: the layers above it are not needed."""


@torch.inference_mode()
def collect_activations(loaded: LoadedModel, questions: Sequence[str], answers: Sequence[str], *,
                        pooling: Pooling = "mean", layers: Sequence[int] | None = None, batch_size: int = 8,
                        systems: Sequence[str | None] | None = None, max_length: int | None = None,
                        description: str = "") -> ActivationSet:
    """Answer-token activations after each chosen decoder layer (default all), pooled as asked.

    Works on any loaded model, with or without LoRA adapters (the adapted modules run as in sampling).
    """
    if pooling not in ("mean", "last", "tokens"):
        raise EmkitError(f"unknown pooling '{pooling}'", fix="use mean, last or tokens")
    if len(questions) != len(answers) or (systems is not None and len(systems) != len(answers)):
        raise EmkitError("questions, answers (and systems) must have the same length",
                         fix="pass one question and one system prompt per answer")
    if not answers:
        raise EmkitError("no answers to collect activations for", fix="select at least one answer")
    modules = decoder_layers(loaded.model)
    wanted = list(range(len(modules))) if layers is None else sorted({int(layer) for layer in layers})
    if not wanted or not all(0 <= layer < len(modules) for layer in wanted):
        raise EmkitError(f"layers {list(layers or [])} are not within the model's {len(modules)} layers",
                         fix=f"choose layer indices 0-{len(modules) - 1}")
    examples = []
    for index, (question, answer) in enumerate(zip(questions, answers, strict=True)):
        ids, mask = encode_pair(loaded.tokenizer, question, answer, systems[index] if systems else None, max_length)
        if not any(mask):
            raise EmkitError(f"answer {index} has no tokens to pool over (empty, or cut off by max_length)",
                             fix="drop empty answers or raise max_length")
        examples.append(_Encoded(ids, mask))

    hidden_size = loaded.model.config.get_text_config().hidden_size
    counts = torch.tensor([sum(example.answer_mask) for example in examples], dtype=torch.long)
    pooled = torch.empty(len(examples), len(wanted), hidden_size) if pooling != "tokens" else None
    per_token: list[torch.Tensor | None] = [None] * len(examples)
    order = sorted(range(len(examples)), key=lambda index: -len(examples[index].input_ids))
    base = loaded.model.get_base_model() if hasattr(loaded.model, "get_base_model") else loaded.model
    decoder = base.get_decoder()
    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0

    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(examples[index].input_ids) for index in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        answer_mask = torch.zeros((len(batch), width), dtype=torch.bool)
        for row, index in enumerate(batch):
            size = len(examples[index].input_ids)
            input_ids[row, :size] = torch.tensor(examples[index].input_ids)
            attention[row, :size] = 1
            answer_mask[row, :size] = torch.tensor(examples[index].answer_mask)
        stacked = _forward_pooled(decoder, modules, wanted, input_ids.to(loaded.device),
                                  attention.to(loaded.device), answer_mask.to(loaded.device), pooling)
        if pooled is not None:
            pooled[batch] = stacked
        else:
            for index, chunk in zip(batch, torch.split(stacked, counts[batch].tolist()), strict=True):
                per_token[index] = chunk
    values = pooled if pooled is not None else torch.cat(per_token)
    return ActivationSet(values, wanted, pooling, loaded.name, counts, description)


def _forward_pooled(decoder, modules, wanted: list[int], input_ids: torch.Tensor, attention: torch.Tensor,
                    answer_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """One forward pass, stopped after the deepest wanted layer: pooled [b or tokens, layers, d]."""
    captured: dict[int, torch.Tensor] = {}

    def make_hook(layer: int):
        def hook(module, args, output):
            captured[layer] = _pool(hidden_of(output), answer_mask, pooling)
            if layer == wanted[-1]:
                raise _StopForward

        return hook

    handles = [modules[layer].register_forward_hook(make_hook(layer)) for layer in wanted]
    try:
        decoder(input_ids=input_ids, attention_mask=attention, use_cache=False)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack([captured[layer] for layer in wanted], dim=1)


def _pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool one layer's [b, t, d] output over the answer tokens, on the device, to float32 on the CPU."""
    if pooling == "mean":
        weights = mask.to(torch.float32)
        summed = torch.einsum("btd,bt->bd", hidden.float(), weights)
        result = summed / weights.sum(dim=1, keepdim=True)
    elif pooling == "last":
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = torch.where(mask, positions, -1).argmax(dim=1)
        result = hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()
    else:
        result = hidden[mask].float()
    return result.cpu()
