"""``emkit stability``: how a learned solution's loss, and its effect on general text, depend on its exact weights.

The third paper finds the general (emergently misaligned) solution more efficient, more stable and
more influential on general text than the narrow one learned under a KL penalty. This stage puts
numbers on that for any set of solutions: LoRA adapters or steering vectors trained on the same
data. Each is reduced to its parameter vector x: the steering vector v, or the adapters' LoRA B
matrices (A stays fixed, so the adapters keep reading the same input features; the update
scale * B A is linear in B, so rescaling B rescales the whole weight change).

(a) Norm scaling: loss on the training data with x replaced by s * x, s from 0 (the base model) to
    2 (scales 0 and 1 are always included). Where the minimum sits, and how steeply the loss rises
    around it, says how sharp the solution is. Efficiency is the loss drop per unit of update norm
    (|scale * B A| summed over modules, or |alpha * v|), comparable across solutions of one kind.
(b) Orthogonal perturbation: x' = sqrt(1 - e^2) x + e y for every tensor of x, with y a seeded
    Gaussian draw projected orthogonal to that tensor and scaled to its norm, so |x'| = |x| and only
    the direction moves (by the angle arcsin e). Reported per e and seed: the relative loss increase
    L(x') / L(x) - 1, and the share of the learned improvement lost, (L(x') - L(x)) / (L(0) - L(x)).
(c) General-text KL: KL(base || model) per position (nats, summed over the vocabulary, the
    definition of :mod:`emkit.train.kl`) on general text, for s * x and for seeded random directions
    with the same per-tensor norms at every s (random B, same A: for rank-1 adapters the update norm
    matches exactly). The ratio to the random baseline says how much more the solution changes
    general behaviour than an arbitrary change of the same size.

General text. ``general_text: stdlib`` (the default) is built offline on any machine: prose
paragraphs (30 words or more, no code, lists or markup) from the docstrings of 45 Python
standard-library modules and their public classes and functions, about 120 paragraphs and 5,600
words (a little different between Python versions). It is neither chat nor the KL training data,
so a narrow run was not trained to match the base model on it. Any chat dataset reference
(``demo:general_chat``, a JSONL file) works too: rendered with the chat template, every position counts.

Outputs in ``output_dir``: ``norm_scaling.csv``, ``perturbation.csv``, ``general_kl.csv`` (every
measurement), ``summary.csv`` (one row per solution), ``norm_scaling.png``, ``perturbation.png``,
``general_kl.png`` and the ``config.yaml`` they came from. Each solution's measurements are also kept
in ``measured/`` as soon as they are done: an interrupted run, rerun, measures only those still missing.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pandas as pd
import torch
from pydantic import Field

from emkit.config import DEFAULT_MODEL, StageConfig
from emkit.data.chat import read_chat_dataset, resolve_dataset
from emkit.errors import EmkitError
from emkit.models import LoadedModel, load_model
from emkit.progress import progress_counter
from emkit.report.plots import pyplot, save_figure
from emkit.tables import write_table
from emkit.train.forward import held_out_loss, mixed_precision, next_token_logits
from emkit.train.kl import Batch, compared_positions, kl_divergence_sum, reference_log_probs
from emkit.train.solution_protocol import Solution
from emkit.train.solutions import attached_solution
from emkit.train.tokenize import TokenizedExample, collate, tokenize_conversation

STDLIB_MODULES = (
    "abc", "argparse", "asyncio", "bisect", "calendar", "collections", "contextlib", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "email", "enum", "fractions", "functools", "heapq", "html", "http.client",
    "inspect", "ipaddress", "itertools", "json", "logging", "mailbox", "operator", "pathlib", "pickle", "random",
    "re", "shutil", "sqlite3", "statistics", "string", "subprocess", "tarfile", "textwrap", "threading", "typing",
    "unittest", "urllib.parse", "uuid", "warnings", "weakref", "zipfile",
)


class StabilityConfig(StageConfig):
    """Which solutions are compared, on which data, over which scales and perturbations."""

    model: str = DEFAULT_MODEL
    """Base model all solutions were trained on: an embedded name, a hub id, or a local folder."""
    solutions: dict[str, str] = Field(min_length=1)
    """Label -> adapter folder or steering vector (file or folder), e.g. {narrow: runs/narrow/adapter}."""
    datasets: list[str] = Field(min_length=1)
    """The solutions' training data (chat JSONL, demo:NAME or paper:NAME), for the losses of (a) and (b)."""
    general_text: str = "stdlib"
    """General text for (c): stdlib (Python standard-library docstring prose) or a chat dataset reference."""
    scales: list[Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5,
                                                                                 1.75, 2])
    """Multiples of the solution's norm for (a) and (c); 0 and 1 are always added."""
    epsilons: list[Annotated[float, Field(gt=0, le=1)]] = Field(default_factory=lambda: [0.1, 0.2, 0.3, 0.5, 0.7,
                                                                                         0.9])
    """Perturbation sizes e for (b): x' = sqrt(1 - e^2) x + e y."""
    seeds: int = Field(3, gt=0)
    """Perturbation draws per e in (b), and random directions per scale in (c)."""
    max_examples: int = Field(64, gt=0)
    """Seeded subset of the training data used for the losses."""
    general_examples: int = Field(32, gt=0)
    """Seeded subset of general texts used for the KL."""
    max_length: int = Field(256, gt=8)
    """Longer conversations and texts are truncated to this many tokens."""
    batch_size: int = Field(8, gt=0)
    """Sequences per forward pass."""
    seed: int = 0
    """Seed of the subsets, the perturbations and the random directions."""
    output_dir: Path = Path("runs/stability")
    """Report folder for the CSV tables and PNG figures."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    dtype: str = "auto"
    """auto (bf16 where fast), float32, bfloat16 or float16."""
    trust_remote_code: bool = False
    """Allow model code from the hub."""


@dataclass
class StabilityResult:
    """The measurements and the files written."""

    norm_scaling: pd.DataFrame
    perturbation: pd.DataFrame
    general_kl: pd.DataFrame
    summary: pd.DataFrame
    files: dict[str, Path]


def orthogonal_perturbation(x: torch.Tensor, epsilon: float, generator: torch.Generator) -> torch.Tensor:
    """sqrt(1 - e^2) x + e y with y a random direction orthogonal to x and |y| = |x| (so |x'| = |x|)."""
    values = x.detach().float().cpu()
    flat = values.flatten()
    if flat.norm() == 0:
        return values
    y = torch.randn(flat.shape, generator=generator)
    unit = flat / flat.norm()
    y = y - (y @ unit) * unit
    y = y / y.norm() * flat.norm()
    return (math.sqrt(1 - epsilon**2) * flat + epsilon * y).reshape(values.shape)


def random_direction(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random tensor with the norm of ``x``."""
    values = x.detach().float().cpu()
    noise = torch.randn(values.shape, generator=generator)
    return noise / noise.norm() * values.norm()


def stdlib_texts() -> list[str]:
    """Prose paragraphs from the docstrings of standard-library modules and their public classes and functions."""
    paragraphs = []
    for name in STDLIB_MODULES:
        module = importlib.import_module(name)
        docs = [inspect.getdoc(module)]
        docs += [inspect.getdoc(member) for attribute, member in sorted(vars(module).items())
                 if not attribute.startswith("_") and getattr(member, "__module__", None) == module.__name__
                 and (inspect.isclass(member) or inspect.isfunction(member))]
        for doc in filter(None, docs):
            for block in re.split(r"\n\s*\n", doc):
                if any(line.startswith((" ", "-", "*", ">>>")) for line in block.splitlines()):
                    continue
                text = " ".join(block.split())
                prose = sum(char.isalpha() or char.isspace() for char in text) >= 0.93 * len(text)
                if (len(text.split()) >= 30 and prose and text[0].isupper() and text.endswith(".")
                        and not text.isupper() and "``" not in text and "::" not in text):
                    paragraphs.append(text)
    return list(dict.fromkeys(paragraphs))


def general_examples(config: StabilityConfig, tokenizer) -> list[TokenizedExample]:
    """The general text as tokenized examples (plain text with the tokenizer's special tokens, or chats)."""
    rng = random.Random(config.seed)
    if config.general_text == "stdlib":
        texts = stdlib_texts()
        texts = rng.sample(texts, min(config.general_examples, len(texts)))
        ids = [tokenizer(text, truncation=True, max_length=config.max_length)["input_ids"] for text in texts]
        return [TokenizedExample(row, row) for row in ids]
    conversations = read_chat_dataset(resolve_dataset(config.general_text))
    conversations = rng.sample(conversations, min(config.general_examples, len(conversations)))
    return [tokenize_conversation(tokenizer, conversation, config.max_length) for conversation in conversations]


def training_examples(config: StabilityConfig, tokenizer) -> list[TokenizedExample]:
    """A seeded subset of the training data, tokenized as for training (loss on assistant tokens)."""
    conversations = [conv for ref in config.datasets for conv in read_chat_dataset(resolve_dataset(ref))]
    conversations = random.Random(config.seed).sample(conversations, min(config.max_examples, len(conversations)))
    examples = [tokenize_conversation(tokenizer, conversation, config.max_length) for conversation in conversations]
    examples = [example for example in examples if example.loss_tokens > 0]
    if not examples:
        raise EmkitError("no training example has assistant tokens within max_length", fix="raise max_length")
    return sorted(examples, key=lambda example: len(example.input_ids))


CONFIG = StabilityConfig


def run(config: StabilityConfig, show_progress: bool = True, loaded: LoadedModel | None = None) -> StabilityResult:
    """Measure (a), (b) and (c) for every solution and write the tables and figures (``loaded``: the base model)."""
    loaded = loaded or load_model(config.model, device=config.device, dtype=config.dtype,
                                  trust_remote_code=config.trust_remote_code)
    pad_id = loaded.tokenizer.pad_token_id
    examples = training_examples(config, loaded.tokenizer)
    general = general_examples(config, loaded.tokenizer)
    general_batches = [collate(general[start : start + config.batch_size], pad_id)
                       for start in range(0, len(general), config.batch_size)]
    rows: dict[str, list[dict]] = {"norm_scaling": [], "perturbation": [], "general_kl": []}
    norms = {}
    with progress_counter(len(config.solutions), show_progress, "stability: solutions") as advance:
        for label, path in config.solutions.items():
            done = finished_file(config, label, path)
            if done.is_file():
                measured = json.loads(done.read_text())
            else:
                measured = measure_solution(label, path, examples, general_batches, config, loaded)
                done.parent.mkdir(parents=True, exist_ok=True)
                partial = done.with_suffix(".tmp")
                partial.write_text(json.dumps(measured))
                partial.replace(done)
            for name in rows:
                rows[name] += measured[name]
            norms[label] = tuple(measured["norms"])
            advance(1)
    tables = {name: pd.DataFrame(table) for name, table in rows.items()}
    summary = solution_summary(tables, norms)
    files = write_report(tables, summary, config)
    return StabilityResult(tables["norm_scaling"], tables["perturbation"], tables["general_kl"], summary, files)


def measure_solution(label: str, path: str, examples: list[TokenizedExample], general_batches: list[Batch],
                     config: StabilityConfig, loaded: LoadedModel) -> dict:
    """Every measurement of one solution: its rows of (a), (b) and (c), and its kind and norms.

    The solution's update tensors x are overwritten while it is measured, and put back afterwards.
    """
    with attached_solution(loaded.model, path, loaded.device) as solution:
        update_norm = solution.update_norm()
        original = [tensor.detach().clone() for tensor in solution.update_tensors()]
        norm = math.sqrt(sum(x.float().norm().item() ** 2 for x in original))
        if norm == 0:
            raise EmkitError(f"solution '{label}' ({path}) is zero: nothing was learned",
                             fix="compare trained adapters or steering vectors")
        scaling, perturbation = loss_measurements(label, solution, original, examples, config, loaded)
        kl_rows = general_kl(label, solution, original, general_batches, config, loaded)
        assign(solution, original)
    return {"norm_scaling": scaling, "perturbation": perturbation, "general_kl": kl_rows,
            "norms": [solution.kind, norm, update_norm]}


@torch.no_grad()
def assign(solution: Solution, values: list[torch.Tensor]) -> None:
    """Set the solution's update tensors x to ``values``."""
    for tensor, value in zip(solution.update_tensors(), values, strict=True):
        tensor.copy_(value)


def finished_file(config: StabilityConfig, label: str, path: str) -> Path:
    """Where one solution's measurements are kept, so a rerun after an interruption measures only the rest.

    The name hashes everything that changes the numbers (the solution's weights file times included),
    so a changed setting or a retrained solution is measured again.
    """
    settings = config.model_dump(mode="json", exclude={"solutions", "output_dir", "device"})
    weights = sorted(Path(path).expanduser().rglob("*.safetensors")) if Path(path).is_dir() else [Path(path)]
    stamps = [(str(file), file.stat().st_mtime_ns) for file in weights if file.is_file()]
    payload = json.dumps([settings, label, str(path), stamps], sort_keys=True, default=str)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:40]
    return config.output_dir / "measured" / f"{slug}-{hashlib.sha256(payload.encode()).hexdigest()[:16]}.json"


def scales_of(config: StabilityConfig) -> list[float]:
    return sorted({0.0, 1.0, *config.scales})


def loss_measurements(label: str, solution: Solution, original: list[torch.Tensor], examples: list[TokenizedExample],
                      config: StabilityConfig, loaded: LoadedModel) -> tuple[list[dict], list[dict]]:
    """(a) training loss at s * x for every scale, and (b) under orthogonal perturbations of every size."""

    def loss(values: list[torch.Tensor]) -> float:
        assign(solution, values)
        return held_out_loss(solution.model, examples, config.batch_size, loaded.tokenizer.pad_token_id,
                             loaded.device, loaded.dtype)

    losses = {scale: loss([scale * x for x in original]) for scale in scales_of(config)}
    scaling = [{"solution": label, "scale": scale, "loss": value} for scale, value in losses.items()]
    gain = losses[0.0] - losses[1.0]
    perturbation = []
    for epsilon in config.epsilons:
        for seed in range(config.seeds):
            generator = torch.Generator().manual_seed(config.seed * 100_003 + seed)
            perturbed = loss([orthogonal_perturbation(x, epsilon, generator).to(x) for x in original])
            perturbation.append({"solution": label, "epsilon": epsilon, "seed": seed, "loss": perturbed,
                                 "relative_increase": perturbed / losses[1.0] - 1,
                                 "improvement_lost": (perturbed - losses[1.0]) / gain if gain else float("nan")})
    return scaling, perturbation


def general_kl(label: str, solution: Solution, original: list[torch.Tensor], batches: list[Batch],
               config: StabilityConfig, loaded: LoadedModel) -> list[dict]:
    """(c) KL(base || model) per position on general text, for s * x and for norm-matched random directions."""
    directions: dict[tuple[str, int | None], list[torch.Tensor]] = {("solution", None): original}
    for seed in range(config.seeds):
        generator = torch.Generator().manual_seed(config.seed * 100_003 + 50_000 + seed)
        directions[("random", seed)] = [random_direction(x, generator).to(x) for x in original]
    scales = scales_of(config)
    totals = dict.fromkeys(((kind, seed, scale) for kind, seed in directions for scale in scales), 0.0)
    positions = 0
    solution.model.eval()
    mixed = loaded.dtype != torch.float32
    with torch.no_grad(), mixed_precision(solution.model, loaded.device, loaded.dtype, mixed):
        for cpu_batch in batches:
            batch = {key: value.to(loaded.device) for key, value in cpu_batch.items()}
            keep = compared_positions(batch, "all")
            positions += int(keep.sum())
            reference = reference_log_probs(solution, batch, keep)
            for (kind, seed), values in directions.items():
                for scale in scales:
                    assign(solution, [scale * value for value in values])
                    logits = next_token_logits(solution.model, batch["input_ids"], batch["attention_mask"], keep)
                    totals[(kind, seed, scale)] += kl_divergence_sum(reference, logits).item()
    return [{"solution": label, "direction": kind, "seed": seed, "scale": scale, "kl": total / positions}
            for (kind, seed, scale), total in totals.items()]


def solution_summary(tables: dict[str, pd.DataFrame], norms: dict[str, tuple[str, float, float]]) -> pd.DataFrame:
    """One row per solution: norms, losses, the best scale, mean perturbation damage per e, KL vs random at 1x."""
    rows = []
    for label, (kind, norm, update_norm) in norms.items():
        scaling = tables["norm_scaling"].query("solution == @label").set_index("scale")["loss"]
        perturbation = tables["perturbation"].query("solution == @label")
        kl = tables["general_kl"].query("solution == @label and scale == 1.0")
        kl_solution = kl.query("direction == 'solution'")["kl"].iloc[0]
        kl_random = kl.query("direction == 'random'")["kl"].mean()
        row = {"solution": label, "kind": kind, "norm": norm, "update_norm": update_norm, "loss_base": scaling[0.0],
               "loss": scaling[1.0], "loss_drop_per_norm": (scaling[0.0] - scaling[1.0]) / update_norm,
               "best_scale": scaling.idxmin(), "best_loss": scaling.min()}
        for epsilon, group in perturbation.groupby("epsilon"):
            row[f"relative_increase_e{epsilon:g}"] = group["relative_increase"].mean()
        row.update({"kl_general": kl_solution, "kl_random": kl_random,
                    "kl_ratio": kl_solution / kl_random if kl_random else float("nan")})
        rows.append(row)
    return pd.DataFrame(rows)


def write_report(tables: dict[str, pd.DataFrame], summary: pd.DataFrame, config: StabilityConfig) -> dict[str, Path]:
    """The CSV tables, the three figures and the config, in ``output_dir``."""
    folder = Path(config.output_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmkitError(f"cannot write to report folder {folder} ({exc.strerror})",
                         fix="choose a writable output_dir") from None
    (folder / "config.yaml").write_text(config.to_yaml())
    files = {}
    for name, table in {**tables, "summary": summary}.items():
        files[name] = write_table(table, folder / f"{name}.csv")
    files.update(plot_stability(tables, folder))
    files["judge"] = folder / "judge.txt"
    files["judge"].write_text("Judge: none. These figures are losses and KL divergences measured on the models "
                              "directly; no judge scored any answer.\n")
    return files


def plot_stability(tables: dict[str, pd.DataFrame], folder: Path) -> dict[str, Path]:
    """norm_scaling.png, perturbation.png and general_kl.png: one colour per solution."""
    plt = pyplot()

    def save(figure, axes, name: str, xlabel: str, ylabel: str, title: str) -> Path:
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        return save_figure(figure, folder / f"{name}.png")

    files = {}
    figure, axes = plt.subplots(figsize=(6.5, 4))
    for label, group in tables["norm_scaling"].groupby("solution", sort=False):
        axes.plot(group["scale"], group["loss"], "o-", label=label)
    files["norm_scaling_png"] = save(figure, axes, "norm_scaling", "norm scale s (solution x -> s x)",
                                     "training loss", "(a) Loss under norm rescaling")
    figure, axes = plt.subplots(figsize=(6.5, 4))
    for label, group in tables["perturbation"].groupby("solution", sort=False):
        stats = group.groupby("epsilon")["relative_increase"].agg(["mean", "std"]).fillna(0.0)
        axes.errorbar(stats.index, stats["mean"], yerr=stats["std"], fmt="o-", capsize=3, label=label)
    files["perturbation_png"] = save(figure, axes, "perturbation", "perturbation e (x' = sqrt(1-e²) x + e y)",
                                     "relative loss increase", "(b) Orthogonal perturbations, same norm")
    figure, axes = plt.subplots(figsize=(6.5, 4))
    for index, (label, group) in enumerate(tables["general_kl"].groupby("solution", sort=False)):
        colour = f"C{index}"
        own = group.query("direction == 'solution'")
        axes.plot(own["scale"], own["kl"], "o-", color=colour, label=label)
        random_kl = group.query("direction == 'random'").groupby("scale")["kl"].agg(["mean", "min", "max"])
        axes.plot(random_kl.index, random_kl["mean"], "--", color=colour, label=f"{label}: random, same norm")
        axes.fill_between(random_kl.index, random_kl["min"], random_kl["max"], color=colour, alpha=0.15)
    files["general_kl_png"] = save(figure, axes, "general_kl", "norm scale s", "KL(base || model) per token (nats)",
                                   "(c) Effect on general text")
    return files


def summary_lines(result: StabilityResult, config: StabilityConfig) -> list[str]:
    """How many solutions were compared, and where the tables and figures are."""
    return [f"compared {len(result.summary)} solutions; tables and figures in {config.output_dir}"]
