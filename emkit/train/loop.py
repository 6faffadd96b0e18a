"""The training loop: assistant-only loss, optional KL penalty, bf16 autocast, length-grouped batches, resumable.

Run folder layout::

    output_dir/
      config.yaml                    the run's config (a rerun must match it)
      checkpoints/checkpoint-N/      adapter, model or steering-vector safetensors, optimizer.pt,
                                     rng.safetensors, state.json
      adapter/, model/ or steering_vector/   the final weights
      log.jsonl                      one line per optimizer step (loss is the SFT loss; kl the KL term)
      loss.png                       loss curve

Data order (and the KL batches' order) is a pure function of (seed, step), and the optimizer,
scheduler and RNG states are checkpointed, so killing a run and rerunning the same command ends
with the same weights as an uninterrupted run.

Under ``accelerate launch`` or ``torchrun`` the step's micro-batches are shared out among the
processes and their gradients summed (:mod:`emkit.train.distributed`); process 0 writes the files.
A full fine-tune launched with FSDP is sharded across the processes, and its checkpoints gathered.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.distributed.fsdp import FSDPModule
from torch.optim.lr_scheduler import LambdaLR

from emkit.data.chat import read_chat_dataset, resolve_dataset
from emkit.errors import EmkitError
from emkit.models import choose_device, choose_dtype, load_model
from emkit.train.config import TrainConfig
from emkit.train.distributed import Processes, join_processes
from emkit.train.presets import PRESETS, preset_layers
from emkit.train.tokenize import (
    IGNORE_INDEX,
    TokenizedExample,
    collate,
    length_grouped_batches,
    tokenize_conversation,
)

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
    final_path = run / {"full": "model", "steering-vector": "steering_vector"}.get(config.preset, "adapter")
    if (run / "summary.json").is_file():
        summary = json.loads((run / "summary.json").read_text())
        return TrainResult(run, final_path, summary["steps"], read_log(run))

    processes = join_processes(config.device, config.preset, config.grad_accum)
    device_name = config.device if processes.device is None else str(processes.device)
    device = choose_device(device_name)
    compute_dtype = choose_dtype(device, config.dtype)
    full = config.preset == "full"
    # Frozen base weights are stored in the compute dtype; trainable weights always stay fp32.
    attention = config.attention if config.attention != "auto" else ("eager" if device.type == "cpu" else "sdpa")
    loaded = load_model(config.model, device=device_name, dtype="float32" if full else str(compute_dtype)[6:],
                        trust_remote_code=config.trust_remote_code, attention=attention)
    tokenizer = loaded.tokenizer
    train_set, eval_set = prepare_examples(config, tokenizer)
    torch.manual_seed(config.seed)
    model = make_trainable(loaded.model, config)
    if processes.sharded:
        model = processes.shard(model)
    from emkit.train.kl import KLTerm  # kl.py builds on this module's logits and autocast helpers

    # Built before any checkpoint is restored: the reference is the untrained model.
    kl = KLTerm.build(config, tokenizer, model, device, compute_dtype, processes.sharded) if config.kl else None
    if processes.main:
        write_run_config(run, config)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    learning_rate = config.learning_rate or PRESETS[config.preset].learning_rate
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=config.weight_decay)
    epoch_batches = EpochBatches(train_set, config.batch_size, config.seed)
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * epoch_batches.per_epoch / config.grad_accum))
    scheduler = LambdaLR(optimizer, lr_schedule(config.lr_scheduler, config.warmup_steps, total_steps))

    checkpoints = run / "checkpoints"
    start_step, history = restore_latest_checkpoint(checkpoints, model, optimizer, scheduler, config.preset, processes)

    def checkpoint(step: int) -> None:
        """Write checkpoint-``step`` (sharded, every process first gathers the whole state for process 0)."""
        weights, optimizer_state = (processes.gather(model, optimizer) if processes.sharded
                                    else (None, optimizer.state_dict()))
        if processes.main:
            save_checkpoint(checkpoints, step, model, optimizer_state, scheduler, history, weights)
        processes.wait()

    # Every process decides before any writes (the barrier), so they all take part in writing checkpoint-0 or none do.
    fresh = start_step == 0 and not (checkpoints / "checkpoint-0").exists()
    processes.wait()
    if fresh:
        checkpoint(0)
    pad_id = tokenizer.pad_token_id
    mixed = compute_dtype != torch.float32
    model.train()
    with StepProgress(total_steps, start_step, show_progress and processes.main, label=run.name) as progress:
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
                    record["eval_loss"] = evaluate(model, eval_set, config.batch_size, pad_id, device, compute_dtype)
                    model.train()
                history.append(record)
                checkpoint(step + 1)
            else:
                history.append(record)
            progress.advance(record)
            if on_step is not None:
                on_step(record)

    weights = processes.gather_weights(model) if processes.sharded else None
    if not processes.main:
        processes.wait()  # until process 0 has written the final weights
        return TrainResult(run, final_path, total_steps, history)
    write_log(run, history)
    save_weights(model, tokenizer, final_path, weights)
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
    if saved.is_file() and TrainConfig.load(saved).config_hash() != config.config_hash():
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


def make_trainable(model, config: TrainConfig):
    """Wrap the model with the preset's LoRA adapters or steering vector (trainable in fp32), or unfreeze it."""
    num_layers = model.config.num_hidden_layers
    if config.preset == "full":
        model.requires_grad_(True)
        return model
    if config.preset == "steering-vector":
        from emkit.train.steering_vector import steered_model

        return steered_model(model, config.steering)
    from peft import LoraConfig, get_peft_model

    preset = PRESETS[config.preset]
    layers = config.lora.layers if config.lora.layers is not None else preset_layers(config.preset, num_layers)
    for layer in layers or []:
        if not 0 <= layer < num_layers:
            raise EmkitError(f"layer index {layer} is outside the model ({num_layers} layers: 0-{num_layers - 1})",
                             fix="choose lora.layers within that range")
    target = config.lora.target_modules or preset.target_modules
    peft_config = LoraConfig(
        r=config.lora.rank or preset.rank,
        lora_alpha=config.lora.alpha or preset.alpha,
        use_rslora=preset.use_rslora if config.lora.use_rslora is None else config.lora.use_rslora,
        lora_dropout=config.lora.dropout,
        target_modules=list(target) if isinstance(target, tuple | list) else target,
        layers_to_transform=layers,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(model, peft_config)
    except ValueError as exc:
        raise EmkitError(f"cannot place LoRA adapters: {str(exc).splitlines()[0]}",
                         fix="check lora.target_modules against the model's module names") from None
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    return model


def causal_lm_loss_sum(model, input_ids: torch.Tensor, labels: torch.Tensor,
                       attention_mask: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy over labelled positions (assistant tokens)."""
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    logits = next_token_logits(model, input_ids, attention_mask, keep)
    return F.cross_entropy(logits.float(), targets[keep], reduction="sum")


def next_token_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      keep: torch.Tensor) -> torch.Tensor:
    """Logits [kept positions, vocab] predicting token t+1 at each position t where ``keep`` [batch, seq-1] holds.

    The output head runs only on the kept positions, not on the whole sequence: with a 49k-token
    vocabulary that is a large share of the step's work.
    """
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    if isinstance(causal_lm, FSDPModule):  # a sharded model gathers its weights in its own forward
        return causal_lm(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1][keep]
    hidden = causal_lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    logits = causal_lm.get_output_embeddings()(hidden[:, :-1][keep])
    softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


@contextlib.contextmanager
def mixed_precision(model, device: torch.device, dtype: torch.dtype, enabled: bool):
    """Autocast to ``dtype`` with fp32 trainable weights.

    peft would cast every adapter input up to its fp32 weights (a copy per adapted module);
    inside autocast that is wasted work, so the cast is switched off while autocast is on.
    """
    if not enabled:
        yield
        return
    from peft.helpers import disable_input_dtype_casting

    with torch.autocast(device.type, dtype=dtype), disable_input_dtype_casting(model):
        yield


@torch.no_grad()
def evaluate(model, examples: list[TokenizedExample], batch_size: int, pad_id: int, device: torch.device,
             dtype: torch.dtype) -> float:
    """Mean assistant-token loss on held-out examples."""
    model.eval()
    total, tokens = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        tensors = {key: value.to(device) for key, value in collate(batch, pad_id).items()}
        with mixed_precision(model, device, dtype, dtype != torch.float32):
            total += causal_lm_loss_sum(model, **tensors).item()
        tokens += sum(example.loss_tokens for example in batch)
    return total / tokens


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


def save_checkpoint(folder: Path, step: int, model, optimizer_state: dict, scheduler, history: list[dict],
                    weights: dict | None = None) -> None:
    """Write checkpoint-N atomically (a partial folder renamed into place).

    ``weights`` are a sharded model's gathered weights (with an optimizer state keyed by parameter
    name); unset, the model's own weights are written.
    """
    final = folder / f"checkpoint-{step}"
    partial = folder / f"checkpoint-{step}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    model.save_pretrained(partial, **({} if weights is None else {"state_dict": weights}))
    torch.save(optimizer_state, partial / "optimizer.pt")
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    save_file(rng, partial / "rng.safetensors")
    state = {"step": step, "scheduler": scheduler.state_dict(), "history": history, "sharded": weights is not None}
    (partial / "state.json").write_text(json.dumps(state))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)


def checkpoint_steps(folder: Path) -> list[int]:
    """Steps of the complete checkpoints in a run's checkpoints folder, ascending."""
    if not folder.is_dir():
        return []
    steps = [int(path.name.split("-")[1]) for path in folder.glob("checkpoint-*")
             if path.name.split("-")[1].isdigit() and (path / "state.json").is_file()]
    return sorted(steps)


def restore_latest_checkpoint(folder: Path, model, optimizer, scheduler, preset: str,
                              processes: Processes) -> tuple[int, list[dict]]:
    """Load the newest checkpoint into model, optimizer, scheduler and RNG; return (step, history)."""
    steps = checkpoint_steps(folder)
    if not steps:
        return 0, []
    path = folder / f"checkpoint-{steps[-1]}"
    state = json.loads((path / "state.json").read_text())
    if state.get("sharded", False) != processes.sharded:
        launched = "with" if state.get("sharded") else "without"
        raise EmkitError(f"{path} was written by a run launched {launched} FSDP, and its optimizer state is laid "
                         "out for that", fix=f"relaunch {launched} FSDP, or start over in a new output_dir")
    optimizer_state = torch.load(path / "optimizer.pt", weights_only=True)
    if processes.sharded:
        processes.restore(model, optimizer, load_file(path / "model.safetensors"), optimizer_state)
    elif preset == "full":
        model.load_state_dict(load_file(path / "model.safetensors"), strict=False)
    elif preset == "steering-vector":
        model.load_vector(path)
    else:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(path / "adapter_model.safetensors"))
    if not processes.sharded:
        optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(state["scheduler"])
    rng = load_file(path / "rng.safetensors")
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    return state["step"], state["history"]


def save_weights(model, tokenizer, path: Path, weights: dict | None = None) -> None:
    """Save the final adapter (or full model plus tokenizer) as safetensors (``weights``: a sharded model's)."""
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, **({} if weights is None else {"state_dict": weights}))
    if not hasattr(model, "get_base_model"):
        tokenizer.save_pretrained(partial)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(partial, path)


def write_log(run: Path, history: list[dict]) -> None:
    (run / "log.jsonl").write_text("".join(json.dumps(record) + "\n" for record in history))


def read_log(run: Path) -> list[dict]:
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


class StepProgress:
    """A rich progress bar showing step, loss and tokens/s (silent when disabled)."""

    def __init__(self, total: int, completed: int, enabled: bool, label: str) -> None:
        self.enabled = enabled
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]} tok/s"),
                                     TimeRemainingColumn())
            self.task = self.progress.add_task(f"train {label}", total=total, completed=completed, loss="-", speed="-")

    def __enter__(self) -> StepProgress:
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.enabled:
            self.progress.stop()

    def advance(self, record: dict) -> None:
        if self.enabled:
            self.progress.update(self.task, advance=1, loss=f"{record['loss']:.3f}",
                                 speed=f"{record['tokens'] / record['seconds']:.0f}")
