"""The KL penalty that makes the narrow solution learnable: stay the base model on general data.

Definition. At every compared position t of a KL batch, let P_t be the base model's next-token
distribution and Q_t the trained model's. For one optimizer step

    KL = (1 / N) * sum_t sum_v P_t(v) * (log P_t(v) - log Q_t(v))        (nats per position)

where t runs over the compared positions of the step's KL batches (one KL batch of
``kl.batch_size`` general conversations goes with every training micro-batch) and N is their
number. ``kl.positions`` chooses them: ``all`` is every position that predicts a token of the
conversation (system, user and assistant text; as the papers), ``assistant`` only positions that
predict assistant tokens (the answers the model would give). The step minimises

    SFT loss + kl.weight * KL

with the SFT loss token-averaged over the step's assistant tokens, as without KL. Both terms are
token means over the whole step, so they do not depend on how the step is split into micro-batches.

Translating the papers' weight. The authors' trainer (``KLRegularizedSFTTrainer``) computes
``F.kl_div(log Q, log P, log_target=True)`` element-wise over [batch, position, vocabulary] and
divides the masked sum by the mask summed over all three axes, i.e. by N * V, where V is the logits' width
(``model.config.vocab_size``: 152,064 for Qwen2.5-7B/14B/32B-Instruct, 49,152 for SmolLM2). Their
term is therefore KL / V, and the same penalty here is

    kl.weight = their kl_weight / V          (their 1e5 on Qwen2.5-14B: 1e5 / 152064 = 0.658)

with ``kl.positions=all``. Their mask also counts each sequence's last position (which predicts
nothing in the conversation; one position per sequence, negligible), and they average per
micro-batch rather than per step (identical when micro-batches hold equal token counts).

Reference and memory. P comes from the untrained model: for LoRA presets and the steering vector
the same weights with the adapters (or the vector) switched off, which costs no memory; for full
fine-tuning a frozen copy of the weights in the compute dtype. When the reference log-probs of
all KL positions fit ``kl.cache_mb`` (N_all x V x 4 bytes: 197 KB per position for SmolLM2,
608 KB for Qwen2.5, so 1 GiB holds ~5,400 or ~1,760 positions) they are computed once, kept in
host memory, and no copy is needed; otherwise they are recomputed every step (one extra no-grad
forward of the KL batch). Peak device memory of the term is about three [positions, V] float32
tensors of one KL batch.

Order. The KL batches are fixed (grouped by length once, from the seed) and visited in a
shuffled order per pass that is a pure function of (seed, pass), so KL batch ``i`` of the run is
the same on resume.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
from torch import nn

from emkit.data.chat import read_chat_dataset, resolve_dataset
from emkit.errors import EmkitError
from emkit.train.config import KLSettings, TrainConfig
from emkit.train.forward import causal_lm_of, mixed_precision, next_token_logits
from emkit.train.solution_protocol import Solution
from emkit.train.tokenize import IGNORE_INDEX, collate, length_grouped_batches, tokenize_conversation

Batch = dict[str, torch.Tensor]


def kl_divergence_sum(reference_log_probs: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """sum over positions and vocabulary of P (log P - log Q), P given as log-probs, Q as logits [positions, V]."""
    return F.kl_div(F.log_softmax(logits.float(), dim=-1), reference_log_probs, log_target=True, reduction="sum")


def compared_positions(batch: Batch, positions: str) -> torch.Tensor:
    """[batch, seq-1] mask of the positions whose next-token distributions are compared."""
    if positions == "assistant":
        return batch["labels"][:, 1:] != IGNORE_INDEX
    return batch["attention_mask"][:, 1:].bool()


@torch.no_grad()
def reference_log_probs(solution: Solution, batch: Batch, keep: torch.Tensor) -> torch.Tensor:
    """The base model's next-token log-probs [kept positions, V] (float32): the model without ``solution``."""
    with solution.disabled() as base:
        logits = next_token_logits(base, batch["input_ids"], batch["attention_mask"], keep)
    return F.log_softmax(logits.float(), dim=-1)


def vocabulary_size(model: nn.Module) -> int:
    """Width of the model's logits (what the papers' KL is divided by)."""
    return causal_lm_of(model).get_output_embeddings().weight.shape[0]


def kl_batches(settings: KLSettings, tokenizer, max_length: int, seed: int, pad_id: int) -> list[Batch]:
    """The KL data as fixed length-grouped batches (CPU tensors), deterministic in the seed."""
    conversations = read_chat_dataset(resolve_dataset(settings.dataset))
    if settings.max_examples and settings.max_examples < len(conversations):
        conversations = random.Random(seed).sample(conversations, settings.max_examples)
    examples = [tokenize_conversation(tokenizer, conversation, max_length) for conversation in conversations]
    if settings.positions == "assistant":
        examples = [example for example in examples if example.loss_tokens > 0]
    if not examples:
        raise EmkitError(f"no KL example from {settings.dataset} has assistant tokens within max_length",
                         fix="raise max_length or use kl.positions=all")
    groups = length_grouped_batches([len(example.input_ids) for example in examples], settings.batch_size, seed)
    return [collate([examples[i] for i in group], pad_id) for group in groups]


class KLTerm:
    """A run's KL batches, visited in a seeded order, and the base model's log-probs on them: kept in ``cache``,
    or computed live by running the model without the solution ``reference``."""

    def __init__(self, batches: list[Batch], positions: str, seed: int, device: torch.device,
                 reference: Solution | None, cache: list[torch.Tensor] | None) -> None:
        self.batches, self.seed, self.device = batches, seed, device
        self.keeps = [compared_positions(batch, positions) for batch in batches]
        self.counts = [int(keep.sum()) for keep in self.keeps]
        self.reference, self.cache = reference, cache
        self._order: tuple[int, list[int]] | None = None

    @classmethod
    def build(cls, config: TrainConfig, tokenizer, solution: Solution, device: torch.device,
              dtype: torch.dtype, sharded: bool = False) -> KLTerm:
        """Read the KL data and set up the reference: cached log-probs when they fit ``cache_mb``, else live.

        A sharded (FSDP) full fine-tune has no whole copy to keep as a live reference, so it needs the cache.
        """
        settings = config.kl
        batches = kl_batches(settings, tokenizer, config.max_length, config.seed, tokenizer.pad_token_id)
        term = cls(batches, settings.positions, config.seed, device, None, None)
        cache_bytes = sum(term.counts) * vocabulary_size(solution.model) * 4
        if cache_bytes <= settings.cache_mb * 2**20:
            with mixed_precision(solution.model, device, dtype, dtype != torch.float32):
                term.cache = [reference_log_probs(solution, term.device_batch(i), term.device_keep(i)).cpu()
                              for i in range(len(batches))]
        elif sharded:
            raise EmkitError(f"under FSDP the KL reference must be cached, and its log-probs need "
                             f"{cache_bytes / 2**20:.0f} MB, over kl.cache_mb {settings.cache_mb}",
                             fix=f"set kl.cache_mb={math.ceil(cache_bytes / 2**20)} (host memory), or use fewer "
                                 "kl.max_examples")
        else:
            solution.keep_base(dtype)
            term.reference = solution
        return term

    def order(self, index: int) -> int:
        """Which fixed KL batch goes with micro-batch ``index`` of the run (a pure function of the seed)."""
        cycle, position = divmod(index, len(self.batches))
        if self._order is None or self._order[0] != cycle:
            order = list(range(len(self.batches)))
            random.Random(self.seed + cycle).shuffle(order)
            self._order = (cycle, order)
        return self._order[1][position]

    def tokens(self, index: int) -> int:
        """Compared positions in the KL batch of micro-batch ``index``."""
        return self.counts[self.order(index)]

    def device_batch(self, batch: int) -> Batch:
        return {key: value.to(self.device) for key, value in self.batches[batch].items()}

    def device_keep(self, batch: int) -> torch.Tensor:
        return self.keeps[batch].to(self.device)

    def divergence_sum(self, model: nn.Module, index: int) -> torch.Tensor:
        """Summed KL(base || model) over the KL batch of micro-batch ``index``; differentiable in the model."""
        batch = self.order(index)
        tensors, keep = self.device_batch(batch), self.device_keep(batch)
        if self.cache is not None:
            reference = self.cache[batch].to(self.device)
        else:
            reference = reference_log_probs(self.reference, tensors, keep)
        logits = next_token_logits(model, tensors["input_ids"], tensors["attention_mask"], keep)
        return kl_divergence_sum(reference, logits)
