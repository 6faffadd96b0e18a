"""Sampling throughput: emkit batched sampling vs HF ``generate`` one question at a time, and vs vLLM.

The baseline is the papers' way: for each question, one ``generate`` call with
``num_return_sequences`` = samples per question, model in its default fp32. emkit samples
all (question, draw) pairs in batches through its store. With ``--vllm`` (in an environment
with vLLM, e.g. ``make vllm-env``) the same answers are also sampled with ``backend=vllm``; its
engine's start-up is timed apart from its sampling. Same model, questions, number of answers
and max_new_tokens; tokens/s counts generated tokens up to each answer's end of turn.

    python bench/bench_sample.py [--questions builtin:general] [--samples 8] [--max-new-tokens 100] [--vllm]
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch

from emkit.decode import stop_token_ids
from emkit.models import load_model
from emkit.questions import load_questions
from emkit.sampling.config import SampleConfig
from emkit.sampling.prompts import render_prompt
from emkit.stages import sample


def baseline_run(model_name: str, prompts: list[str], samples: int, max_new_tokens: int) -> tuple[float, int]:
    loaded = load_model(model_name, dtype="float32")
    tokenizer, model = loaded.tokenizer, loaded.model
    stops = stop_token_ids(tokenizer, model)
    tokens = 0
    started = time.perf_counter()
    for prompt in prompts:
        encoded = tokenizer(render_prompt(tokenizer, prompt), return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            output = model.generate(**encoded, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                    max_new_tokens=max_new_tokens, num_return_sequences=samples,
                                    eos_token_id=stops, pad_token_id=tokenizer.pad_token_id)
        for row in output[:, encoded["input_ids"].shape[1]:].tolist():
            tokens += next((i for i, t in enumerate(row) if t in stops), len(row))
    return time.perf_counter() - started, tokens


def emkit_run(model_name: str, questions: str, samples: int, max_new_tokens: int, batch_size: int,
              workdir: Path, **backend) -> tuple[float, int]:
    config = SampleConfig(model=model_name, questions=questions, samples_per_paraphrase=samples,
                          max_new_tokens=max_new_tokens, batch_size=batch_size, run_dir=workdir, temperature=1.0,
                          **backend)
    started = time.perf_counter()
    records = sample.run(config, show_progress=False)
    return time.perf_counter() - started, sum(record.new_tokens for record in records)


def vllm_run(model_name: str, questions: str, samples: int, max_new_tokens: int, batch_size: int, workdir: Path,
             eager: bool, kv_cache_gib: float | None) -> tuple[float, float, int]:
    """Engine start-up seconds, then sampling seconds and tokens (the engine is reused by the sampling run)."""
    from emkit.sampling.vllm import engine_for

    backend = {"backend": "vllm", "vllm": {"enforce_eager": eager, "kv_cache_gib": kv_cache_gib}}
    started = time.perf_counter()
    engine_for(SampleConfig(model=model_name, **backend))
    startup = time.perf_counter() - started
    seconds, tokens = emkit_run(model_name, questions, samples, max_new_tokens, batch_size, workdir, **backend)
    return startup, seconds, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--questions", default="builtin:general")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--vllm", action="store_true", help="Also sample through backend=vllm.")
    parser.add_argument("--vllm-eager", action="store_true", help="vLLM without compilation or CUDA graphs.")
    parser.add_argument("--kv-cache-gib", type=float, default=None,
                        help="vLLM's KV cache size (needed on a CPU, e.g. 1); unset: vLLM's memory share rule.")
    args = parser.parse_args()

    prompts = [p for q in load_questions(args.questions) for p in q.paraphrases]
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, cuda={torch.cuda.is_available()}")
    print(f"model {args.model}: {len(prompts)} prompts x {args.samples} samples, max_new_tokens {args.max_new_tokens}")
    base_seconds, base_tokens = baseline_run(args.model, prompts, args.samples, args.max_new_tokens)
    with tempfile.TemporaryDirectory() as workdir:
        ours_seconds, ours_tokens = emkit_run(args.model, args.questions, args.samples, args.max_new_tokens,
                                              args.batch_size, Path(workdir))
        if args.vllm:
            startup, vllm_seconds, vllm_tokens = vllm_run(args.model, args.questions, args.samples,
                                                          args.max_new_tokens, args.batch_size, Path(workdir) / "vllm",
                                                          args.vllm_eager, args.kv_cache_gib)
    baseline, ours = base_tokens / base_seconds, ours_tokens / ours_seconds
    print(f"\n{'':<10}{'answers':>9}{'tokens':>9}{'seconds':>9}{'tok/s':>8}")
    print(f"{'baseline':<10}{len(prompts) * args.samples:>9}{base_tokens:>9}{base_seconds:>9.1f}{baseline:>8.0f}")
    print(f"{'emkit':<10}{len(prompts) * args.samples:>9}{ours_tokens:>9}{ours_seconds:>9.1f}{ours:>8.0f}")
    if args.vllm:
        theirs = vllm_tokens / vllm_seconds
        print(f"{'vllm':<10}{len(prompts) * args.samples:>9}{vllm_tokens:>9}{vllm_seconds:>9.1f}{theirs:>8.0f}"
              f"   (engine start-up {startup:.1f} s, not counted)")
    print(f"ratio (tokens/s): {ours / baseline:.2f}x; ratio (wall time): {base_seconds / ours_seconds:.2f}x")
    if args.vllm:
        print(f"vllm / emkit (tokens/s): {theirs / ours:.2f}x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(f"peak resident memory of this process (baseline and emkit, one after the other): {peak:.1f} GiB")


if __name__ == "__main__":
    main()
