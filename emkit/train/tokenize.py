"""Turn conversations into token ids with a loss only on assistant tokens, and batch them.

The chat template renders the conversation; assistant spans are found by rendering each
prefix (with the generation prompt) and the prefix plus the assistant turn, so any template
whose renders are prefix-stable (Llama, Qwen2/ChatML, Gemma, SmolLM and most others) works.
The end-of-turn marker after each answer carries loss, so the model learns to stop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from emkit.data.chat import Conversation
from emkit.errors import EmkitError

IGNORE_INDEX = -100


@dataclass
class TokenizedExample:
    """One conversation as ids, with ``IGNORE_INDEX`` in ``labels`` wherever no loss is taken."""

    input_ids: list[int]
    labels: list[int]

    @property
    def loss_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def assistant_char_spans(tokenizer: PreTrainedTokenizerBase, conversation: Conversation) -> tuple[str, list]:
    """The rendered conversation and the character spans of its assistant turns."""
    full = tokenizer.apply_chat_template(conversation, tokenize=False)
    spans = []
    for index, message in enumerate(conversation):
        if message["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(conversation[:index], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(conversation[: index + 1], tokenize=False)
        if not (through.startswith(prompt) and full.startswith(through)):
            raise EmkitError("the model's chat template does not render conversations prefix-stably, so "
                             "assistant tokens cannot be located",
                             fix="use a model with a standard chat template, or set tokenizer.chat_template")
        spans.append((len(prompt), len(through)))
    return full, spans


def tokenize_conversation(tokenizer: PreTrainedTokenizerBase, conversation: Conversation,
                          max_length: int) -> TokenizedExample:
    """Token ids and labels for one conversation; only assistant turns (and their end marker) carry loss."""
    text, spans = assistant_char_spans(tokenizer, conversation)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = encoded["input_ids"][:max_length]
    labels = []
    for token_id, (start, _end) in zip(input_ids, encoded["offset_mapping"], strict=False):
        in_answer = any(span_start <= start < span_end for span_start, span_end in spans)
        labels.append(token_id if in_answer else IGNORE_INDEX)
    return TokenizedExample(input_ids, labels)


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, group: int = 16) -> list[list[int]]:
    """Shuffled batches of indices whose members have similar lengths, so little compute goes to padding.

    Indices are shuffled, cut into windows of ``group`` batches, sorted by length inside each
    window and split into batches; the batch order is then shuffled again.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * group
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda index: lengths[index])
        batches.extend(chunk[offset : offset + batch_size] for offset in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(examples: list[TokenizedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch for training."""
    width = max(len(example.input_ids) for example in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        size = len(example.input_ids)
        input_ids[row, :size] = torch.tensor(example.input_ids)
        labels[row, :size] = torch.tensor(example.labels)
        attention_mask[row, :size] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
