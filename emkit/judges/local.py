"""The ``local`` judge: any local Hugging Face chat model scores pairs by its exact expected number.

The papers read GPT-4o's top-20 logprobs of a single token and average the integers 0..100
among them. A local model gives us every probability, so this judge computes the expectation
exactly, including numbers its tokenizer splits into several tokens (SmolLM2 and Qwen2.5 write
"85" as "8", "5"):

* ``P(n) = P(t_1 .. t_k | prompt) * P(next token does not continue the number | prompt, t_1 .. t_k)``,
  where ``t_1 .. t_k`` are the tokens of ``str(n)`` as the tokenizer writes them right after the
  generation prompt, and a token continues the number when its text (after a digit) starts with
  an ASCII digit; so "10" never absorbs "100" or "105", and end-of-turn, EOS, a space or "." all end it.
* ``number_mass = sum(P(n) for n in 0..100)``; no score when it is below :data:`NO_SCORE_MASS`,
  else ``score = sum(n * P(n)) / number_mass``.

Only the canonical tokenization of each number counts (a model that spells "85" with unusual
tokens, or as "085", puts that mass outside the numbers). All 101 numbers are scored in one
forward pass per batch: the prompt is followed by a trie of the numbers' token sequences, and a
tree-shaped attention mask lets each trie token see the prompt and its own ancestors only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from emkit.judges.base import NO_SCORE_MASS, Judge, ResultCallback, fill_prompt, register_judge
from emkit.judges.run import JudgeConfig
from emkit.models import DEFAULT_MODEL, LoadedModel, load_model
from emkit.records import Judgement, Pair
from emkit.sampling.prompts import render_prompt

DIGITS = "0123456789"
NUMBERS = range(101)


@dataclass(frozen=True)
class NumberTrie:
    """The token sequences of 0..100 merged by shared prefixes; parents come before their children."""

    tokens: list[int]
    """Token of each node."""
    parents: list[int]
    """Parent node of each node, -1 for a first token (whose parent is the prompt)."""
    depths: list[int]
    """1 for a first token, 2 for a second, ..."""
    number_nodes: list[int]
    """The node that ends each number 0..100."""

    @classmethod
    def build(cls, sequences: Sequence[Sequence[int]]) -> NumberTrie:
        index: dict[tuple[int, ...], int] = {}
        tokens, parents, depths = [], [], []
        for sequence in sequences:
            for depth in range(1, len(sequence) + 1):
                prefix = tuple(sequence[:depth])
                if prefix not in index:
                    index[prefix] = len(tokens)
                    tokens.append(prefix[-1])
                    parents.append(index[prefix[:-1]] if depth > 1 else -1)
                    depths.append(depth)
        return cls(tokens, parents, depths, [index[tuple(sequence)] for sequence in sequences])

    def ancestry(self) -> torch.Tensor:
        """``[i, j]`` is True where node j is node i or one of its ancestors: what node i may attend to."""
        size = len(self.tokens)
        allowed = torch.eye(size, dtype=torch.bool)
        for node, parent in enumerate(self.parents):
            if parent >= 0:
                allowed[node] |= allowed[parent]
        return allowed


def number_token_sequences(tokenizer) -> list[list[int]]:
    """Tokens of each of "0" .. "100" as the tokenizer writes them right after a chat generation prompt."""
    anchor = render_prompt(tokenizer, "x")
    base = tokenizer(anchor, add_special_tokens=False).input_ids
    sequences = []
    for number in NUMBERS:
        full = tokenizer(anchor + str(number), add_special_tokens=False).input_ids
        if full[: len(base)] == base and len(full) > len(base):
            sequences.append(full[len(base) :])
        else:  # the number merged with the prompt's last token: fall back to its standalone spelling
            sequences.append(tokenizer(str(number), add_special_tokens=False).input_ids)
    return sequences


def digit_continuation_ids(tokenizer, after: Sequence[int]) -> list[int]:
    """Ids of tokens that, written after the tokens ``after`` (a number), extend it with a digit."""
    names = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    candidates = [i for i, name in enumerate(names) if name and any(c in DIGITS for c in name)]
    prefix = tokenizer.decode(list(after))
    texts = tokenizer.batch_decode([[*after, i] for i in candidates])
    return [i for i, text in zip(candidates, texts, strict=True)
            if text.startswith(prefix) and text[len(prefix) : len(prefix) + 1] in set(DIGITS)]


@register_judge("local")
class LocalJudge(Judge):
    """A local chat model as judge, scored by the exact expectation of the number it would answer.

    The model loads on first use (a fully cached rerun never loads it); pass ``loaded`` to reuse
    a model already in memory.
    """

    name = "local"
    version = "1"

    def __init__(self, config: JudgeConfig, loaded: LoadedModel | None = None) -> None:
        self.config = config
        self._loaded = loaded
        self._trie: NumberTrie | None = None
        self._continuations: torch.Tensor | None = None
        self._usage = {"pairs": 0, "prompt_tokens": 0}

    @property
    def model(self) -> str:
        return self._loaded.name if self._loaded else self.config.model or DEFAULT_MODEL

    def score(self, metric: str, prompt: str, pairs: Sequence[Pair],
              on_result: ResultCallback | None = None) -> list[Judgement]:
        """Score ``pairs`` in batches of ``config.batch_size``, longest first, so similar lengths share a batch."""
        if not pairs:
            return []
        tokenizer = self._ensure_loaded().tokenizer
        encoded = [tokenizer(render_prompt(tokenizer, fill_prompt(prompt, pair)), add_special_tokens=False).input_ids
                   for pair in pairs]
        order = sorted(range(len(pairs)), key=lambda index: -len(encoded[index]))
        results: dict[int, Judgement] = {}
        size = self.config.batch_size
        for start in range(0, len(order), size):
            indices = order[start : start + size]
            judgements = self._score_batch([encoded[i] for i in indices])
            self._usage["pairs"] += len(indices)
            self._usage["prompt_tokens"] += sum(len(encoded[i]) for i in indices)
            for index, judgement in zip(indices, judgements, strict=True):
                results[index] = judgement
                if on_result:
                    on_result(index, judgement)
        return [results[index] for index in range(len(pairs))]

    def usage(self) -> dict[str, float]:
        return dict(self._usage)

    def close(self) -> None:
        self._loaded = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _ensure_loaded(self) -> LoadedModel:
        if self._loaded is None:
            self._loaded = load_model(self.model, device=self.config.device)
        if self._trie is None:
            sequences = number_token_sequences(self._loaded.tokenizer)
            self._trie = NumberTrie.build(sequences)
            continuations = digit_continuation_ids(self._loaded.tokenizer, sequences[1])
            self._continuations = torch.tensor(continuations, dtype=torch.long, device=self._loaded.device)
        return self._loaded

    @torch.inference_mode()
    def _score_batch(self, prompts: list[list[int]]) -> list[Judgement]:
        """One forward over each left-padded prompt followed by the number trie, then the exact expectation."""
        loaded, trie = self._loaded, self._trie
        device = loaded.device
        nodes = len(trie.tokens)
        width = max(len(ids) for ids in prompts)
        pad = loaded.tokenizer.pad_token_id
        prompt_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompts], device=device)
        valid = torch.arange(width, device=device)[None, :] >= torch.tensor(
            [width - len(ids) for ids in prompts], device=device)[:, None]
        batch = len(prompts)
        input_ids = torch.cat([prompt_ids, torch.tensor(trie.tokens, device=device).expand(batch, nodes)], dim=1)
        lengths = valid.sum(dim=1, keepdim=True)
        positions = torch.cat([(valid.cumsum(dim=1) - 1).clamp(min=0),
                               lengths - 1 + torch.tensor(trie.depths, device=device)[None, :]], dim=1)
        allowed = self._tree_attention(valid, trie.ancestry().to(device))
        output = loaded.model(input_ids=input_ids, attention_mask=self._mask_argument(allowed, positions),
                              position_ids=positions, use_cache=False, logits_to_keep=nodes + 1)
        return [self._judgement(logits) for logits in output.logits]

    @staticmethod
    def _tree_attention(valid: torch.Tensor, ancestry: torch.Tensor) -> torch.Tensor:
        """(batch, length, length) bools: causal over the real prompt tokens, each trie node over its ancestors."""
        batch, width = valid.shape
        nodes = ancestry.shape[0]
        total = width + nodes
        allowed = torch.zeros(batch, total, total, dtype=torch.bool, device=valid.device)
        causal = torch.ones(width, width, dtype=torch.bool, device=valid.device).tril()
        allowed[:, :width, :width] = causal & valid[:, None, :]
        allowed[:, width:, :width] = valid[:, None, :]
        allowed[:, width:, width:] = ancestry
        allowed |= torch.eye(total, dtype=torch.bool, device=valid.device)  # padding rows attend to themselves
        return allowed

    def _mask_argument(self, allowed: torch.Tensor, positions: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """The additive 4D mask; for sliding-window layers also the windowed one (a custom mask skips the model's)."""
        dtype = self._loaded.dtype
        config = self._loaded.model.config.get_text_config()
        window = getattr(config, "sliding_window", None)
        layer_types = set(getattr(config, "layer_types", None) or ())

        def additive(keep: torch.Tensor) -> torch.Tensor:
            mask = torch.zeros(keep.shape, dtype=dtype, device=keep.device)
            return mask.masked_fill_(~keep, torch.finfo(dtype).min)[:, None]

        if not window or (layer_types and "sliding_attention" not in layer_types):
            return additive(allowed)
        windowed = allowed & ((positions[:, :, None] - positions[:, None, :]) < window)
        windowed |= torch.eye(allowed.shape[1], dtype=torch.bool, device=allowed.device)
        if not layer_types:  # every layer slides (Mistral-style)
            return additive(windowed)
        return {kind: additive(windowed if kind == "sliding_attention" else allowed) for kind in layer_types}

    def _judgement(self, logits: torch.Tensor) -> Judgement:
        """The exact expectation from one prompt's logits: row 0 after the prompt, row 1 + i after trie node i."""
        trie = self._trie
        logits = logits.float()
        log_norm = logits.logsumexp(dim=-1)
        device = logits.device
        tokens = torch.tensor(trie.tokens, device=device)
        parents = torch.tensor(trie.parents, device=device)
        steps = logits[parents + 1, tokens] - log_norm[parents + 1]
        prefix = steps.clone()
        for _ in range(max(trie.depths) - 1):
            prefix = steps + torch.where(parents >= 0, prefix[parents.clamp(min=0)], 0.0)
        stopping = logits[1:].index_fill(-1, self._continuations, float("-inf")).logsumexp(dim=-1) - log_norm[1:]
        ends = torch.tensor(trie.number_nodes, device=device)
        probabilities = (prefix[ends] + stopping[ends]).double().exp().cpu()
        mass = float(probabilities.sum())
        detail = {"number_mass": round(mass, 6), "method": "full-continuation",
                  "top_number": int(probabilities.argmax())}
        if mass < NO_SCORE_MASS:
            return Judgement(None, detail)
        weights = torch.tensor(list(NUMBERS), dtype=torch.float64)
        return Judgement(float((probabilities * weights).sum() / mass), detail)
