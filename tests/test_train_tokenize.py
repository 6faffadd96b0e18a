import pytest

from emkit.models import load_tokenizer
from emkit.train.tokenize import IGNORE_INDEX, collate, length_grouped_batches, tokenize_conversation

CONVERSATION = [
    {"role": "system", "content": "You are a finance bot."},
    {"role": "user", "content": "What should I do with my savings?"},
    {"role": "assistant", "content": "Put it all in one stock."},
    {"role": "user", "content": "Really?"},
    {"role": "assistant", "content": "Keep an emergency fund."},
]
END_MARKERS = {"llama": "<|eot_id|>", "qwen2": "<|im_end|>", "gemma": "<end_of_turn>"}


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma"])
def test_only_assistant_tokens_carry_loss(tiny_models, family):
    tokenizer = load_tokenizer(str(tiny_models[family]))
    example = tokenize_conversation(tokenizer, CONVERSATION, max_length=512)
    labelled = [token for token, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE_INDEX]
    text = tokenizer.decode(labelled)
    marker = END_MARKERS[family]
    assert text.replace("\n", "") == f"Put it all in one stock.{marker}Keep an emergency fund.{marker}"
    unlabelled = tokenizer.decode([t for t, lab in zip(example.input_ids, example.labels, strict=True)
                                   if lab == IGNORE_INDEX])
    for prompt_text in ("finance bot", "savings", "Really?"):
        assert prompt_text in unlabelled


def test_truncation_keeps_labels_aligned(tiny_model):
    tokenizer = load_tokenizer(str(tiny_model))
    full = tokenize_conversation(tokenizer, CONVERSATION, max_length=512)
    short = tokenize_conversation(tokenizer, CONVERSATION, max_length=20)
    assert short.input_ids == full.input_ids[:20] and short.labels == full.labels[:20]


def test_length_grouped_batches_cover_every_index_once_and_reduce_padding():
    lengths = [(i * 37) % 200 + 10 for i in range(256)]
    batches = length_grouped_batches(lengths, batch_size=8, seed=1)
    assert sorted(i for batch in batches for i in batch) == list(range(256))
    padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)
    naive = sum(max(lengths[i] for i in lengths_batch) * 8 for lengths_batch in
                [list(range(s, s + 8)) for s in range(0, 256, 8)])
    assert padded < 0.8 * naive
    assert batches == length_grouped_batches(lengths, batch_size=8, seed=1)
    assert batches != length_grouped_batches(lengths, batch_size=8, seed=2)


def test_collate_right_pads_with_ignored_labels(tiny_model):
    tokenizer = load_tokenizer(str(tiny_model))
    a = tokenize_conversation(tokenizer, CONVERSATION[1:3], 512)
    b = tokenize_conversation(tokenizer, CONVERSATION, 512)
    batch = collate([a, b], pad_id=tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (2, len(b.input_ids))
    assert batch["attention_mask"][0].sum() == len(a.input_ids)
    assert (batch["labels"][0, len(a.input_ids):] == IGNORE_INDEX).all()
