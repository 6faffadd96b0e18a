"""Interpretability overheads: activation collection vs a plain forward pass; steering and ablation hooks in sampling.

(a) ``collect_activations`` (mean pooling over answer tokens, every layer) against the same
batches (same tokens, same right padding, same order) run through the plain decoder with no
hooks and no pooling, and through HF's ``model(..., output_hidden_states=True)``, the usual
hand-written way. Tokens/s counts real, unpadded tokens. Target: >= 90% of the plain forward.

(b) Batched generation of the same prompts with no hooks, with a steering hook (one layer, all
positions) and with an ablation hook (one direction, every layer). Every condition generates
exactly ``--new-tokens`` tokens per prompt (end of turn suppressed), so tokens/s compare like
with like. Target: <= 5% slower than no hooks.

Each measurement is repeated (conditions interleaved) and the fastest run counts, which is the
fairest number on a shared machine.

    python bench/bench_interp.py [--model smollm2-135m] [--pairs 32] [--batch-size 8] [--answer-words 40]
                                 [--prompts 8] [--new-tokens 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from emkit.interp import ablate, collect_activations, decoder_layers, steer
from emkit.interp.activations import encode_pair
from emkit.models import load_model
from emkit.questions import load_questions
from emkit.sampling.prompts import render_prompt

TEXT = (
    "It depends on your goals, but a sensible plan starts with an emergency fund that covers three to six months "
    "of expenses. After that, pay down any high-interest debt, then invest regularly in broad low-cost index funds "
    "rather than single stocks. Keep your costs low, avoid trying to time the market, and review your plan once a "
    "year or whenever your situation changes. If you are unsure, a fee-only adviser can help you decide."
)


def pairs(count: int, words: int) -> tuple[list[str], list[str]]:
    """Questions from the built-in set and answers of varied length cut from a fixed text."""
    questions = [p for question in load_questions("builtin:general") for p in question.paraphrases]
    words_of_text, answers = TEXT.split(), []
    for index in range(count):
        size = max(5, words + (index % 5 - 2) * words // 5)
        answers.append(" ".join(words_of_text[(index * 7 + k) % len(words_of_text)] for k in range(size)))
    return [questions[index % len(questions)] for index in range(count)], answers


def batches(loaded, questions, answers, batch_size):
    """The batches collect_activations builds: longest first, right-padded."""
    encoded = [encode_pair(loaded.tokenizer, q, a)[0] for q, a in zip(questions, answers, strict=True)]
    order = sorted(range(len(encoded)), key=lambda index: -len(encoded[index]))
    pad = loaded.tokenizer.pad_token_id or 0
    result = []
    for start in range(0, len(order), batch_size):
        chunk = [encoded[index] for index in order[start : start + batch_size]]
        width = max(map(len, chunk))
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, tokens in enumerate(chunk):
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        result.append((ids.to(loaded.device), mask.to(loaded.device)))
    return result


def timed(function) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started


def collection(loaded, args) -> None:
    questions, answers = pairs(args.pairs, args.answer_words)
    prepared = batches(loaded, questions, answers, args.batch_size)
    tokens = sum(int(mask.sum()) for _, mask in prepared)
    decoder = loaded.model.get_decoder()

    @torch.inference_mode()
    def plain():
        for ids, mask in prepared:
            decoder(input_ids=ids, attention_mask=mask, use_cache=False)

    @torch.inference_mode()
    def hidden_states():
        for ids, mask in prepared:
            loaded.model(input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=True)

    def emkit():
        collect_activations(loaded, questions, answers, pooling="mean", batch_size=args.batch_size)

    methods = {"plain decoder forward": plain, "HF output_hidden_states": hidden_states,
               "emkit collect_activations": emkit}
    best = best_of(methods, args.repeats)
    print(f"\n(a) activation collection: {args.pairs} pairs, {tokens} real tokens, batch {args.batch_size}, "
          f"{len(decoder_layers(loaded.model))} layers, mean pooling")
    report(best, tokens, "plain decoder forward", "tok/s")


def sampling(loaded, args) -> None:
    questions, _ = pairs(args.prompts, 1)
    texts = [render_prompt(loaded.tokenizer, question) for question in questions]
    loaded.tokenizer.padding_side = "left"
    encoded = loaded.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(loaded.device)
    layers = len(decoder_layers(loaded.model))
    hidden = loaded.model.config.get_text_config().hidden_size
    direction = torch.randn(hidden, generator=torch.Generator().manual_seed(0))

    @torch.inference_mode()
    def generate():
        loaded.model.generate(**encoded, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                              do_sample=False, pad_token_id=loaded.tokenizer.pad_token_id)

    def steered():
        with steer(loaded.model, (direction, [layers // 2]), 4.0, "all"):
            generate()

    def ablated():
        with ablate(loaded.model, direction):
            generate()

    methods = {"no hooks": generate, f"steer (layer {layers // 2})": steered, f"ablate ({layers} layers)": ablated}
    best = best_of(methods, args.repeats)
    print(f"\n(b) batched greedy sampling: {args.prompts} prompts x {args.new_tokens} new tokens")
    report(best, args.prompts * args.new_tokens, "no hooks", "new tok/s")


def best_of(methods: dict, repeats: int) -> dict[str, float]:
    """Fastest of ``repeats`` interleaved runs of each method, after one untimed warm-up run each."""
    for function in methods.values():
        function()
    best = {name: float("inf") for name in methods}
    for _ in range(repeats):
        for name, function in methods.items():
            best[name] = min(best[name], timed(function))
    return best


def report(best: dict[str, float], tokens: int, reference: str, unit: str) -> None:
    print(f"{'':<28}{'seconds':>9}{unit:>12}{'vs ' + reference:>28}")
    for name, seconds in best.items():
        ratio = best[reference] / seconds
        print(f"{name:<28}{seconds:>9.3f}{tokens / seconds:>12.0f}{ratio:>27.1%} ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="embedded name, local folder or hub id")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--pairs", type=int, default=32, help="(question, answer) pairs for (a)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--answer-words", type=int, default=40, help="mean answer length in words")
    parser.add_argument("--prompts", type=int, default=8, help="prompts generated together in (b)")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{torch.get_num_threads()} torch threads{gpu}; torch {torch.__version__}")
    print(f"model {args.model} on {loaded.device} in {str(loaded.dtype).removeprefix('torch.')}")
    collection(loaded, args)
    sampling(loaded, args)


if __name__ == "__main__":
    main()
