"""The training loop: assistant-only loss, optional KL penalty, bf16 autocast, length-grouped batches, resumable.

Run folder layout::

    output_dir/
      config.yaml                    the run's config (a rerun must match it)
      checkpoints/checkpoint-N/      the solution's weights, optimizer, RNG and scheduler state
                                     (:mod:`emkit.train.checkpoints`)
      adapter/, model/ or steering_vector/   the final weights (the solution's folder)
      log.jsonl                      one line per optimizer step (loss is the SFT loss; kl the KL term)
      loss.png                       loss curve

What trains is the preset's solution (:mod:`emkit.train.solutions`: LoRA adapters, the full model
or a steering vector), run through the forward numerics of :mod:`emkit.train.forward`.

Data order (and the KL batches' order) is a pure function of (seed, step), and the optimizer,
scheduler and RNG states are checkpointed, so killing a run and rerunning the same command ends
with the same weights as an uninterrupted run.

Under ``accelerate launch`` or ``torchrun`` the step's micro-batches are shared out among the
processes and their gradients summed (:mod:`emkit.train.distributed`); process 0 writes the files.
A full fine-tune launched with FSDP is sharded across the processes, and its checkpoints gathered.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.optim.lr_scheduler import LambdaLR

from emkit.data.chat import read_chat_dataset, resolve_dataset
from emkit.errors import EmkitError
from emkit.models import choose_device, choose_dtype, load_model
from emkit.progress import progress_counter
from emkit.train.checkpoints import checkpoint_path, restore_latest_checkpoint, save_checkpoint, save_weights
from emkit.train.config import TrainConfig
from emkit.train.distributed import join_processes
from emkit.train.forward import causal_lm_loss_sum, held_out_loss, mixed_precision
from emkit.train.kl import KLTerm
from emkit.train.presets import PRESETS
from emkit.train.solutions import solution_class
from emkit.train.tokenize import TokenizedExample, collate, length_grouped_batches, tokenize_conversation

StepCallback = Callable[[dict], None]


@dataclass
class TrainResult:
    """What a finished run produced."""

    output_dir: Path
    final_path: Path
    steps: int
    history: list[dict]

    @property
    def tokens_per_second(self) -> float:
        seconds = sum(record["seconds"] for record in self.history)
        return sum(record["tokens"] for record in self.history) / seconds if seconds else 0.0


def train(config: TrainConfig, show_progress: bool = True, on_step: StepCallback | None = None) -> TrainResult:
    """Train (or resume) the run described by ``config``; return where its weights are."""
    run = Path(config.output_dir)
    check_run_folder(run, config)
    kind = solution_class(config.preset)
    final_path = run / kind.folder
    if (run / "summary.json").is_file():
        summary = json.loads((run / "summary.json").read_text())
        return TrainResult(run, final_path, summary["steps"], read_log(run))

    processes = join_processes(config.device, config.preset, config.grad_accum)
    device_name = config.device if processes.device is None else str(processes.device)
    device = choose_device(device_name)
    compute_dtype = choose_dtype(device, config.dtype)
    # Frozen base weights are stored in the compute dtype; trainable weights always stay fp32.
    weights_dtype = "float32" if kind.trains_base_weights else str(compute_dtype)[6:]
    attention = config.attention if config.attention != "auto" else ("eager" if device.type == "cpu" else "sdpa")
    loaded = load_model(config.model, device=device_name, dtype=weights_dtype,
                        trust_remote_code=config.trust_remote_code, attention=attention)
    tokenizer = loaded.tokenizer
    train_set, eval_set = prepare_examples(config, tokenizer)
    torch.manual_seed(config.seed)
    solution = kind.build(loaded.model, config)
    if processes.sharded:
        solution.model = processes.shard(solution.model)
    model = solution.model

    # Built before any checkpoint is restored: the reference is the untrained model.
    kl = KLTerm.build(config, tokenizer, solution, device, compute_dtype, processes.sharded) if config.kl else None
    if processes.main:
        write_run_config(run, config)
    trainable = solution.trainable()
    learning_rate = config.learning_rate or PRESETS[config.preset].learning_rate
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=config.weight_decay)
    epoch_batches = EpochBatches(train_set, config.batch_size, config.seed)
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * epoch_batches.per_epoch / config.grad_accum))
    scheduler = LambdaLR(optimizer, lr_schedule(config.lr_scheduler, config.warmup_steps, total_steps))

    checkpoints = run / "checkpoints"
    start_step, history = restore_latest_checkpoint(checkpoints, solution, optimizer, scheduler, processes)

    def checkpoint(step: int) -> None:
        """Write checkpoint-``step`` (sharded, every process first gathers the whole state for process 0)."""
        weights, optimizer_state = (processes.gather(model, optimizer) if processes.sharded
                                    else (None, optimizer.state_dict()))
        if processes.main:
            save_checkpoint(checkpoints, step, solution, optimizer_state, scheduler, history, weights)
        processes.wait()

    # Every process decides before any writes (the barrier), so they all take part in writing checkpoint-0 or none do.
    fresh = start_step == 0 and not checkpoint_path(checkpoints, 0).exists()
    processes.wait()
    if fresh:
        checkpoint(0)
    pad_id = tokenizer.pad_token_id
    mixed = compute_dtype != torch.float32
    model.train()
    with progress_counter(total_steps, show_progress and processes.main, f"train {run.name}", completed=start_step,
                          fields=("loss", "tok/s")) as advance:
        for step in range(start_step, total_steps):
            started = time.perf_counter()
            indices = range(step * config.grad_accum, (step + 1) * config.grad_accum)
            micro_batches = [epoch_batches.batch(index) for index in indices]
            loss_tokens = sum(example.loss_tokens for batch in micro_batches for example in batch)
            kl_tokens = sum(kl.tokens(index) for index in indices) if kl else 0
            step_loss = step_kl = 0.0
            for index, batch in processes.share(list(zip(indices, micro_batches, strict=True))):
                tensors = {key: value.to(device) for key, value in collate(batch, pad_id).items()}
                with mixed_precision(model, device, compute_dtype, mixed):
                    loss_sum = causal_lm_loss_sum(model, **tensors)
                (loss_sum * processes.loss_scale / loss_tokens).backward()
                step_loss += loss_sum.item()
                if kl is not None:
                    with mixed_precision(model, device, compute_dtype, mixed):
                        kl_sum = kl.divergence_sum(model, index)
                    (config.kl.weight * kl_sum * processes.loss_scale / kl_tokens).backward()
                    step_kl += kl_sum.item()
            step_loss, step_kl = processes.sum_floats([step_loss, step_kl])
            processes.sum_gradients(trainable)
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            record = {"step": step + 1, "loss": step_loss / loss_tokens, "lr": scheduler.get_last_lr()[0],
                      "tokens": sum(len(example.input_ids) for batch in micro_batches for example in batch),
                      "seconds": time.perf_counter() - started}
            if kl is not None:
                record["kl"] = step_kl / kl_tokens
            if (step + 1) % config.save_every == 0 or step + 1 == total_steps:
                if eval_set and (processes.main or processes.sharded):  # a sharded forward needs every process
                    record["eval_loss"] = held_out_loss(model, eval_set, config.batch_size, pad_id, device,
                                                        compute_dtype)
                    model.train()
                history.append(record)
                checkpoint(step + 1)
            else:
                history.append(record)
            advance(1, loss=f"{record['loss']:.3f}", **{"tok/s": f"{record['tokens'] / record['seconds']:.0f}"})
            if on_step is not None:
                on_step(record)

    weights = processes.gather_weights(model) if processes.sharded else None
    if not processes.main:
        processes.wait()  # until process 0 has written the final weights
        return TrainResult(run, final_path, total_steps, history)
    write_log(run, history)
    save_weights(solution, tokenizer, final_path, weights)
    from emkit.report.plots import plot_loss_curve

    plot_loss_curve({run.name: history}, run / "loss.png")
    if config.push_to_hub:
        push_to_hub(final_path, config.push_to_hub)
    (run / "summary.json").write_text(json.dumps({"steps": total_steps, "final": final_path.name}))
    processes.wait()
    return TrainResult(run, final_path, total_steps, history)


def check_run_folder(run: Path, config: TrainConfig) -> None:
    """Fail fast on an unwritable folder or one holding a run with a different config (nothing is touched)."""
    existing = next(path for path in (run, *run.parents) if path.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise EmkitError(f"cannot write to output folder {run} ({existing} is not a writable folder)",
                         fix="choose a writable output_dir")
    saved = run / "config.yaml"
    if not saved.is_file():
        return
    # The folder itself may be named another way (relative, absolute): only the rest of the config must match.
    previous = TrainConfig.load(saved).model_copy(update={"output_dir": config.output_dir})
    if previous.config_hash() != config.config_hash():
        raise EmkitError(f"output folder {run} holds a run with a different config",
                         fix="use another output_dir, or delete the folder to start over")


def write_run_config(run: Path, config: TrainConfig) -> None:
    """Create the run folder and store the config, once everything it names has been checked."""
    try:
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text(config.to_yaml())
    except OSError as exc:
        raise EmkitError(f"cannot write to output folder {run} ({exc.strerror})",
                         fix="choose a writable output_dir") from None


def prepare_examples(config: TrainConfig, tokenizer) -> tuple[list[TokenizedExample], list[TokenizedExample]]:
    """Read, subsample, tokenize and split the datasets (deterministic in the seed)."""
    conversations = [conv for ref in config.datasets for conv in read_chat_dataset(resolve_dataset(ref))]
    rng = random.Random(config.seed)
    if config.max_examples and config.max_examples < len(conversations):
        conversations = rng.sample(conversations, config.max_examples)
    examples = [tokenize_conversation(tokenizer, conv, config.max_length) for conv in conversations]
    examples = [example for example in examples if example.loss_tokens > 0]
    if not examples:
        raise EmkitError("no example has assistant tokens within max_length", fix="raise max_length")
    order = list(range(len(examples)))
    rng.shuffle(order)
    held_out = int(len(examples) * config.eval_fraction)
    return [examples[i] for i in order[held_out:]], [examples[i] for i in order[:held_out]]


class EpochBatches:
    """Micro-batch ``i`` of the whole run, epoch after epoch, as a pure function of the seed."""

    def __init__(self, examples: list[TokenizedExample], batch_size: int, seed: int) -> None:
        self.examples, self.batch_size, self.seed = examples, batch_size, seed
        self.lengths = [len(example.input_ids) for example in examples]
        self.per_epoch = math.ceil(len(examples) / batch_size)
        self._cached: tuple[int, list[list[int]]] | None = None

    def batch(self, index: int) -> list[TokenizedExample]:
        epoch, position = divmod(index, self.per_epoch)
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, length_grouped_batches(self.lengths, self.batch_size, self.seed + epoch))
        return [self.examples[i] for i in self._cached[1][position]]


def lr_schedule(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at each step: linear warmup, then the chosen decay."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1 - progress)

    return factor


def write_log(run: Path, history: list[dict]) -> None:
    """Write the run's log.jsonl: one record per optimizer step."""
    (run / "log.jsonl").write_text("".join(json.dumps(record) + "\n" for record in history))


def read_log(run: Path) -> list[dict]:
    """The records of a run's log.jsonl (none if it has no log yet)."""
    log = run / "log.jsonl"
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def push_to_hub(path: Path, repo_id: str) -> None:
    """Upload the final weights to the Hugging Face hub (token from ``HF_TOKEN``)."""
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise EmkitError("push_to_hub is set but HF_TOKEN is not", fix="export HF_TOKEN=... or unset push_to_hub")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, exist_ok=True, private=True)
    api.upload_folder(folder_path=str(path), repo_id=repo_id)
