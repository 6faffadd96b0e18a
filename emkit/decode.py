"""Decoding many prompts at once: continuous batching over a KV cache.

``model.generate`` on a batch runs until its longest answer ends, so rows that finished early keep
costing compute, and the last, partial batch of a run costs as much as a full one. On a CPU, where a
decoding step mostly reads weights, a full batch is nearly as cheap as a small one, so keeping it full
is what pays. :func:`decode_stream` keeps up to ``batch_size`` sequences decoding together: a
sequence leaves the batch the step it ends, and waiting prompts join in groups (one prefill pass per
group, left-padded into the running cache) whenever a quarter of the slots are free.

Forward hooks (steering, ablation, adapter scaling) see what they see under ``generate``: a prefill
pass with the whole prompt (sequence length > 1), then one position per step.

Models whose attention is not full-context at every layer (sliding windows, hybrid caches) decode
through ``model.generate`` in fixed batches instead, since their caches cannot be padded and merged.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from emkit.models import LoadedModel

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")


@dataclass(frozen=True)
class Generated:
    answer: str
    finish_reason: str
    new_tokens: int


def stop_token_ids(tokenizer, model) -> list[int]:
    """End-of-sequence and end-of-turn ids: generation stops at whichever comes first."""
    return end_token_ids(tokenizer, model.generation_config.eos_token_id)


def end_token_ids(tokenizer, configured: int | list[int] | None) -> list[int]:
    """The generation config's end-of-sequence id(s) (``configured``), the tokenizer's, and any end-of-turn token."""
    ids = set()
    ids.update(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in END_OF_TURN_TOKENS if token in vocab)
    return sorted(ids)


def generate_texts(loaded: LoadedModel, prompts: list[str], temperature: float, top_p: float,
                   max_new_tokens: int, seed: int) -> list[Generated]:
    """One answer per rendered prompt, all decoded together, in prompt order."""
    answers = dict(decode_stream(loaded, prompts, temperature, top_p, max_new_tokens, seed, len(prompts)))
    return [answers[index] for index in range(len(prompts))]


@torch.inference_mode()
def decode_stream(loaded: LoadedModel, prompts: list[str], temperature: float, top_p: float, max_new_tokens: int,
                  seed: int, batch_size: int) -> Iterator[tuple[int, Generated]]:
    """Yield (prompt index, answer) for every rendered prompt, as answers finish.

    ``temperature`` 0 decodes greedily; otherwise tokens are drawn from the tempered distribution,
    restricted to the nucleus of mass ``top_p``, from one generator seeded with ``seed``.
    """
    if not prompts:
        return
    if not full_attention_everywhere(loaded.model):
        yield from _generate_in_batches(loaded, prompts, temperature, top_p, max_new_tokens, seed, batch_size)
        return
    decoder = _ContinuousDecoder(loaded, temperature, top_p, max_new_tokens, seed)
    encoded = [loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    waiting = deque(range(len(prompts)))
    refill_at = max(1, batch_size // 4)
    while waiting or decoder.size:
        free = batch_size - decoder.size
        if waiting and free >= min(refill_at, len(waiting)):
            joining = [waiting.popleft() for _ in range(min(free, len(waiting)))]
            yield from decoder.admit(joining, [encoded[index] for index in joining])
        else:
            yield from decoder.step()


def full_attention_everywhere(model: torch.nn.Module) -> bool:
    """Whether every layer attends to the whole context (so caches of different lengths can be merged)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        return all(kind == "full_attention" for kind in layer_types)
    return not (getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True))


def pick_tokens(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> torch.Tensor:
    """Next token per row: argmax at temperature 0, else a draw from the tempered nucleus."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_p < 1:
        ordered, order = logits.sort(dim=-1, descending=True)
        probabilities = ordered.softmax(-1)
        outside = probabilities.cumsum(-1) - probabilities >= top_p  # mass before the token already reaches p
        logits = logits.scatter(-1, order, ordered.masked_fill(outside, float("-inf")))
    return draw(logits.softmax(-1), generator)


def draw(probabilities: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row, drawn by inverting the cumulative distribution (float64, so tail tokens keep their mass).

    ``torch.multinomial`` costs ~80 ms for 64 rows of a 49k vocabulary on a 2-core CPU, a fifth of a
    decoding step; one uniform per row and a binary search cost ~6 ms.
    """
    cumulative = probabilities.double().cumsum(-1)
    uniform = torch.rand(cumulative.shape[0], 1, generator=generator, device=cumulative.device, dtype=torch.float64)
    return torch.searchsorted(cumulative, uniform * cumulative[:, -1:]).squeeze(-1).clamp(max=cumulative.shape[-1] - 1)


class _ContinuousDecoder:
    """The running batch: its KV cache, attention mask (one column per cached position) and tokens so far.

    A row's next position id is its number of real tokens, so it is read off the mask, not kept.
    """

    def __init__(self, loaded: LoadedModel, temperature: float, top_p: float, max_new_tokens: int, seed: int) -> None:
        self.loaded, self.model, self.tokenizer = loaded, loaded.model, loaded.tokenizer
        self.temperature, self.top_p, self.max_new_tokens = temperature, top_p, max_new_tokens
        self.generator = torch.Generator(device=loaded.device).manual_seed(seed)
        self.stops = torch.tensor(stop_token_ids(loaded.tokenizer, loaded.model), device=loaded.device)
        self.pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
        forward = inspect.signature(_causal_lm(loaded.model).forward).parameters
        self.cache_argument = "cache" if "cache" in forward else "past_key_values"
        self.head_only_last = {"logits_to_keep": 1} if "logits_to_keep" in forward else {}
        self.rows: list[int] = []
        self.tokens: list[list[int]] = []
        self.cache: DynamicCache | None = None
        self.mask = self.last = None

    @property
    def size(self) -> int:
        return len(self.rows)

    def admit(self, rows: list[int], prompts: list[list[int]]) -> Iterator[tuple[int, Generated]]:
        """Prefill ``prompts`` (left-padded together), draw their first tokens and join the running batch."""
        device, width = self.loaded.device, max(len(ids) for ids in prompts)
        input_ids = torch.tensor([[self.pad_id] * (width - len(ids)) + ids for ids in prompts], device=device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=device)
        cache = DynamicCache()
        logits = self._forward(input_ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), cache)
        first = pick_tokens(logits, self.temperature, self.top_p, self.generator)
        self._merge(rows, cache, mask, first)
        yield from self._retire()

    def step(self) -> Iterator[tuple[int, Generated]]:
        """One decoding step for every running sequence."""
        self.mask = F.pad(self.mask, (0, 1), value=1)
        positions = self.mask.sum(-1, keepdim=True) - 1
        logits = self._forward(self.last[:, None], self.mask, positions, self.cache)
        self.last = pick_tokens(logits, self.temperature, self.top_p, self.generator)
        for tokens, token in zip(self.tokens, self.last.tolist(), strict=True):
            tokens.append(token)
        yield from self._retire()

    def _forward(self, input_ids, mask, positions, cache) -> torch.Tensor:
        output = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                            **{self.cache_argument: cache}, **self.head_only_last)
        return output.logits[:, -1]

    def _merge(self, rows: list[int], cache: DynamicCache, mask: torch.Tensor, first: torch.Tensor) -> None:
        """Append prefilled rows to the running batch, left-padding whichever cache is shorter."""
        self.rows += rows
        self.tokens += [[token] for token in first.tolist()]
        if self.cache is None or not self.mask.shape[0]:
            self.cache, self.mask, self.last = cache, mask, first
            return
        width = max(self.mask.shape[1], mask.shape[1])
        for running, joining in zip(self.cache.layers, cache.layers, strict=True):
            running.keys = torch.cat([_left_pad(running.keys, width), _left_pad(joining.keys, width)])
            running.values = torch.cat([_left_pad(running.values, width), _left_pad(joining.values, width)])
        self.mask = torch.cat([F.pad(self.mask, (width - self.mask.shape[1], 0)),
                               F.pad(mask, (width - mask.shape[1], 0))])
        self.last = torch.cat([self.last, first])

    def _retire(self) -> Iterator[tuple[int, Generated]]:
        """Yield the sequences that just ended and drop them (and context columns no row uses) from the batch."""
        ended = torch.isin(self.last, self.stops)
        lengths = torch.tensor([len(tokens) for tokens in self.tokens], device=self.last.device)
        done = ended | (lengths >= self.max_new_tokens)
        if not done.any():
            return
        for index in done.nonzero().flatten().tolist():
            tokens = self.tokens[index][:-1] if ended[index] else self.tokens[index]
            answer = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
            yield self.rows[index], Generated(answer, "stop" if ended[index] else "length", len(tokens))
        keep = (~done).nonzero().flatten()
        self.rows = [self.rows[index] for index in keep.tolist()]
        self.tokens = [self.tokens[index] for index in keep.tolist()]
        self.mask, self.last = self.mask[keep], self.last[keep]
        used = self.mask.any(0).nonzero()
        start = int(used[0]) if len(used) else self.mask.shape[1]
        self.mask = self.mask[:, start:]
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[keep, :, start:], layer.values[keep, :, start:]


def _left_pad(states: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad [batch, heads, positions, dim] on the left of the positions axis to ``width``."""
    return F.pad(states, (0, 0, width - states.shape[-2], 0))


def _causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _generate_in_batches(loaded: LoadedModel, prompts: list[str], temperature: float, top_p: float,
                         max_new_tokens: int, seed: int, batch_size: int) -> Iterator[tuple[int, Generated]]:
    """``model.generate`` on fixed, left-padded batches: for models whose caches cannot be merged."""
    tokenizer, model = loaded.tokenizer, loaded.model
    stops = stop_token_ids(tokenizer, model)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0} if temperature > 0 else {
        "do_sample": False}
    tokenizer.padding_side = "left"
    torch.manual_seed(seed)
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        encoded = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(loaded.device)
        output = model.generate(**encoded, max_new_tokens=max_new_tokens, eos_token_id=stops,
                                pad_token_id=tokenizer.pad_token_id, **sampling)
        for offset, tokens in enumerate(output[:, encoded["input_ids"].shape[1]:].tolist()):
            end = next((i for i, token in enumerate(tokens) if token in stops), None)
            kept = tokens if end is None else tokens[:end]
            answer = tokenizer.decode(kept, skip_special_tokens=True).strip()
            yield start + offset, Generated(answer, "length" if end is None else "stop", len(kept))
