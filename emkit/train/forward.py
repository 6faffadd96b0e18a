"""The forward numerics of training: next-token logits, the assistant-token loss, autocast, the held-out loss.

The training loop, the KL term and the stability stage all run the model through these, so a loss
or a log-prob means the same thing in each.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed.fsdp import FSDPModule

from emkit.train.tokenize import IGNORE_INDEX, TokenizedExample, collate


def causal_lm_of(model: nn.Module) -> nn.Module:
    """The causal LM under a peft wrapper (the model itself when there is none)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def causal_lm_loss_sum(model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor,
                       attention_mask: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy over labelled positions (assistant tokens)."""
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    logits = next_token_logits(model, input_ids, attention_mask, keep)
    return F.cross_entropy(logits.float(), targets[keep], reduction="sum")


def next_token_logits(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      keep: torch.Tensor) -> torch.Tensor:
    """Logits [kept positions, vocab] predicting token t+1 at each position t where ``keep`` [batch, seq-1] holds.

    The output head runs only on the kept positions, not on the whole sequence: with a 49k-token
    vocabulary that is a large share of the step's work.
    """
    causal_lm = causal_lm_of(model)
    if isinstance(causal_lm, FSDPModule):  # a sharded model gathers its weights in its own forward
        return causal_lm(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1][keep]
    hidden = causal_lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    logits = causal_lm.get_output_embeddings()(hidden[:, :-1][keep])
    softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


@contextlib.contextmanager
def mixed_precision(model: nn.Module, device: torch.device, dtype: torch.dtype, enabled: bool) -> Iterator[None]:
    """Autocast to ``dtype`` with fp32 trainable weights.

    peft would cast every adapter input up to its fp32 weights (a copy per adapted module);
    inside autocast that is wasted work, so the cast is switched off while autocast is on.
    Autocast's cache of low-precision weight copies is off: with it, a weight changed inside the
    region (a solution rescaled between forwards) would still be read at its old value.
    """
    if not enabled:
        yield
        return
    from peft.helpers import disable_input_dtype_casting

    with torch.autocast(device.type, dtype=dtype, cache_enabled=False), disable_input_dtype_casting(model):
        yield


@torch.no_grad()
def held_out_loss(model: nn.Module, examples: list[TokenizedExample], batch_size: int, pad_id: int,
                  device: torch.device, dtype: torch.dtype) -> float:
    """Mean assistant-token loss of ``model`` (put in eval mode) on ``examples``, in batches of ``batch_size``."""
    model.eval()
    total, tokens = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        tensors = {key: value.to(device) for key, value in collate(batch, pad_id).items()}
        with mixed_precision(model, device, dtype, dtype != torch.float32):
            total += causal_lm_loss_sum(model, **tensors).item()
        tokens += sum(example.loss_tokens for example in batch)
    return total / tokens
