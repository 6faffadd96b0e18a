import pytest
import torch

from emkit.models import load_model
from emkit.train.forward import causal_lm_loss_sum, held_out_loss, next_token_logits
from emkit.train.tokenize import collate, tokenize_conversation


def examples_of(tokenizer, count=5):
    conversations = [[{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "answer " * i}]
                     for i in range(1, count + 1)]
    return [tokenize_conversation(tokenizer, c, 128) for c in conversations]


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma"])
def test_loss_matches_transformers_reference(tiny_models, family):
    loaded = load_model(str(tiny_models[family]), dtype="float32")
    examples = examples_of(loaded.tokenizer, 3)
    batch = collate(examples, loaded.tokenizer.pad_token_id)
    ours = causal_lm_loss_sum(loaded.model, **batch) / sum(e.loss_tokens for e in examples)
    reference = loaded.model(**batch).loss
    assert ours.item() == pytest.approx(reference.item(), rel=1e-4)


@pytest.mark.parametrize("family", ["llama", "gemma"])
def test_next_token_logits_are_the_full_logits_at_the_kept_positions(tiny_models, family):
    loaded = load_model(str(tiny_models[family]), dtype="float32")
    batch = collate(examples_of(loaded.tokenizer, 3), loaded.tokenizer.pad_token_id)
    keep = batch["attention_mask"][:, 1:].bool()
    keep[0, :2] = False
    with torch.no_grad():
        full = loaded.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        kept = next_token_logits(loaded.model, batch["input_ids"], batch["attention_mask"], keep)
    torch.testing.assert_close(kept, full[keep], atol=1e-5, rtol=1e-5)


def test_held_out_loss_is_the_token_mean_whatever_the_batch_size(tiny_model):
    loaded = load_model(str(tiny_model), dtype="float32")
    examples = examples_of(loaded.tokenizer)
    pad_id = loaded.tokenizer.pad_token_id
    with torch.no_grad():
        whole = causal_lm_loss_sum(loaded.model, **collate(examples, pad_id)).item()
    expected = whole / sum(example.loss_tokens for example in examples)
    loaded.model.train()
    for batch_size in (1, 2, 5):
        loss = held_out_loss(loaded.model, examples, batch_size, pad_id, torch.device("cpu"), torch.float32)
        assert loss == pytest.approx(expected, rel=1e-5)
    assert not loaded.model.training
