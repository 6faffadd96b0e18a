"""Training throughput: emkit vs plain peft + transformers Trainer (default fp32 settings).

Both sides train the same model on the same examples (emkit's tokenisation, so the token
counts are identical) with the same LoRA config, for one epoch, in this one process.
Tokens/s counts real (non-padding) tokens. emkit's time includes its model load, tokenisation
and checkpoint writing; the baseline's time is ``trainer.train()`` alone.

    python bench/bench_train.py [--dataset demo:finance_risky] [--examples 128] [--presets lora-all rank1-single]
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch

from emkit.models import load_model
from emkit.train import TrainConfig, train
from emkit.train.loop import prepare_examples
from emkit.train.solutions import make_solution


def emkit_run(config: TrainConfig) -> tuple[float, int]:
    started = time.perf_counter()
    result = train(config, show_progress=False)
    seconds = time.perf_counter() - started
    return seconds, sum(record["tokens"] for record in result.history)


def baseline_run(config: TrainConfig, workdir: Path) -> tuple[float, int]:
    """The obvious way: peft.get_peft_model + Trainer with DataCollatorForSeq2Seq, fp32, defaults."""
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    loaded = load_model(config.model, dtype="float32")
    examples, _ = prepare_examples(config, loaded.tokenizer)
    model = make_solution(loaded.model, config).model  # the same peft LoraConfig emkit builds
    dataset = [{"input_ids": e.input_ids, "labels": e.labels, "attention_mask": [1] * len(e.input_ids)}
               for e in examples]
    tokenizer = loaded.tokenizer
    tokenizer.padding_side = "right"
    arguments = TrainingArguments(
        output_dir=str(workdir), per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, num_train_epochs=config.epochs,
        learning_rate=config.learning_rate or 1e-4, save_strategy="no", report_to=[], logging_steps=1000,
        use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=arguments, train_dataset=dataset,
                      data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started, sum(len(e.input_ids) for e in examples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dataset", default="demo:finance_risky")
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--presets", nargs="+", default=["lora-all", "rank1-single"])
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, cuda={torch.cuda.is_available()}")
    print(f"model {args.model}, dataset {args.dataset}, {args.examples} examples, batch {args.batch_size}, 1 epoch")
    rows = []
    for preset in args.presets:
        with tempfile.TemporaryDirectory() as workdir:
            config = TrainConfig(model=args.model, datasets=[args.dataset], output_dir=Path(workdir) / "emkit",
                                 preset=preset, max_examples=args.examples, batch_size=args.batch_size,
                                 grad_accum=1, epochs=1, save_every=10_000, warmup_steps=0)
            base_seconds, base_tokens = baseline_run(config, Path(workdir) / "baseline")
            ours_seconds, ours_tokens = emkit_run(config)
        assert ours_tokens == base_tokens, (ours_tokens, base_tokens)
        rows.append((preset, base_tokens / base_seconds, ours_tokens / ours_seconds))

    print(f"\n{'preset':<14}{'baseline tok/s':>16}{'emkit tok/s':>14}{'ratio':>8}")
    for preset, baseline, ours in rows:
        print(f"{preset:<14}{baseline:>16.0f}{ours:>14.0f}{ours / baseline:>7.2f}x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(f"peak resident memory of this process (baseline and emkit, one after the other): {peak:.1f} GiB")


if __name__ == "__main__":
    main()
