"""Rank-1 adapters as interpretable scalars: read them per token, and turn them up, off or around.

A rank-1 LoRA adds ``scaling * B * (A . x)`` to its module's output: a fixed direction B written
with a per-token strength ``A . x``. That scalar is what Soligo et al. (2025) interpret: which
tokens fire which adapter, and whether an adapter's mean activation predicts misaligned or
domain-specific answers. Scaling the scalar by a factor (1 unchanged, 0 off, negative reversed)
tests what each adapter does to generation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import pandas as pd
import torch

from emkit.dynamics.checkpoints import layer_order, module_name
from emkit.errors import EmkitError
from emkit.models import LoadedModel
from emkit.train.tokenize import assistant_char_spans

INDEX_COLUMNS = ("response_id", "token_index", "position", "token")
"""The columns of a scalar table that are not adapters."""


def lora_a_modules(model: torch.nn.Module | LoadedModel) -> dict[str, torch.nn.Module]:
    """The lora_A layer of every active adapter, by short module name (``layers.21.mlp.down_proj``).

    A module carrying several active adapters gets one entry each, named ``module:adapter``.
    """
    from peft.tuners.lora import LoraLayer

    model = model.model if isinstance(model, LoadedModel) else model
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            active = [adapter for adapter in module.active_adapters if adapter in module.lora_A]
            if active and module.merged:
                raise EmkitError(f"adapter on {module_name(name)} is merged into the base weights, so its scalar "
                                 "cannot be read or scaled", fix="unmerge the adapters (model.unmerge_adapter())")
            for adapter in active:
                key = module_name(name) if len(active) == 1 else f"{module_name(name)}:{adapter}"
                found[key] = module.lora_A[adapter]
    if not found:
        raise EmkitError("the model has no active LoRA adapters", fix="load it with adapters=[...]")
    return dict(sorted(found.items(), key=lambda item: layer_order(item[0])))


@contextlib.contextmanager
def capture_scalars(model: torch.nn.Module | LoadedModel) -> Iterator[dict[str, torch.Tensor]]:
    """Record every adapter's A-projection ``lora_A(dropout(x))`` during forward passes.

    Yields a dict that, after each forward pass, holds each adapter's output [batch, seq, rank] (float32, CPU).
    The hooks are removed on exit, whatever happens inside.
    """
    captured: dict[str, torch.Tensor] = {}
    handles = []

    def keeper(name: str):
        def hook(_module, _inputs, output):
            captured[name] = output.detach().float().cpu()

        return hook

    try:
        for name, module in lora_a_modules(model).items():
            handles.append(module.register_forward_hook(keeper(name)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def scale_adapters(model: torch.nn.Module | LoadedModel, factors: Mapping[str, float]) -> Iterator[None]:
    """Multiply chosen adapters' scalars by factors while inside the block (for generation or scoring).

    ``with scale_adapters(loaded, {"layers.21.mlp.down_proj": 0.0}): sample(config, loaded=loaded)``
    samples with that adapter switched off; the hooks are removed on exit.
    """
    modules = lora_a_modules(model)
    unknown = [name for name in factors if name not in modules]
    if unknown:
        raise EmkitError(f"no adapter named {', '.join(unknown)}", fix=f"choose from {', '.join(modules)}")
    handles = []
    try:
        for name, factor in factors.items():
            handles.append(modules[name].register_forward_hook(lambda _m, _i, output, f=factor: output * f))
        yield
    finally:
        for handle in handles:
            handle.remove()


def answer_positions(tokenizer, question: str, answer: str, system: str | None = None,
                     max_length: int = 2048) -> tuple[list[int], list[int]]:
    """Token ids of the chat-rendered (question, answer) and the positions of the answer's own tokens.

    The end-of-turn marker the template appends is not part of the answer.
    """
    conversation = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    text, spans = assistant_char_spans(tokenizer, conversation)
    start, end = spans[-1]
    content = answer.strip()
    found = text.find(content, start, end) if content else -1
    if found >= 0:
        start, end = found, found + len(content)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"][:max_length]
    special = set(tokenizer.all_special_ids)
    positions = [index for index, (token, (token_start, _)) in enumerate(zip(ids, encoded["offset_mapping"],
                                                                               strict=False))
                 if start <= token_start < end and token not in special]
    return ids, positions


@torch.no_grad()
def adapter_scalars(loaded: LoadedModel, pairs: Sequence[tuple[str, str]], system: str | None = None,
                    batch_size: int = 8, max_length: int = 2048) -> pd.DataFrame:
    """Per-token scalars of every adapter on (question, answer) pairs, answer tokens only.

    One row per answer token: response_id (the pair's index), token_index (within the answer),
    position (within the rendered conversation), token (its text), then one column per adapter
    (``module[i]`` per component for rank > 1).
    """
    if not pairs:
        raise EmkitError("no (question, answer) pairs to read scalars on", fix="pass at least one pair")
    tokenizer, model = loaded.tokenizer, loaded.model
    rendered = [answer_positions(tokenizer, question, answer, system, max_length) for question, answer in pairs]
    frames = []
    model.eval()
    with capture_scalars(model) as captured:
        for first in range(0, len(rendered), batch_size):
            batch = rendered[first : first + batch_size]
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (ids, _) in enumerate(batch):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention_mask[row, : len(ids)] = 1
            model(input_ids=input_ids.to(loaded.device), attention_mask=attention_mask.to(loaded.device))
            for row, (ids, positions) in enumerate(batch):
                columns: dict[str, object] = {
                    "response_id": first + row, "token_index": range(len(positions)), "position": positions,
                    "token": [tokenizer.decode([ids[position]]) for position in positions]}
                for name, output in captured.items():
                    values = output[row, positions]
                    if values.shape[1] == 1:
                        columns[name] = values[:, 0].numpy()
                    else:
                        columns.update({f"{name}[{i}]": values[:, i].numpy() for i in range(values.shape[1])})
                frames.append(pd.DataFrame(columns))
    return pd.concat(frames, ignore_index=True)
