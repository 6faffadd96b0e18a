"""``emkit lora-probe``: per-token adapter scalars on judged answers, and sparse probes of which adapters predict
misaligned vs aligned answers, and in-domain vs not within each class.

Reads the store's answers, judges them (cached), reads the organism's scalars on every answer
(:mod:`emkit.dynamics.lora_scalars`), probes them (:mod:`emkit.dynamics.probe`) and writes scalars.parquet,
responses.csv, summary.csv, coefficients.csv and one violin plot per probed task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pydantic import Field, PositiveInt

from emkit.config import StageConfig
from emkit.dynamics.lora_scalars import adapter_scalars
from emkit.dynamics.probe import ProbeResult, coefficient_table, response_features, run_probe_tasks
from emkit.dynamics.scalar_plots import plot_probe_coefficients
from emkit.errors import EmkitError
from emkit.judges.base import Judge
from emkit.judges.run import JudgeConfig
from emkit.models import LoadedModel, load_model
from emkit.records import SampleRecord
from emkit.stages.checkpoint_runs import resolve_adapter, run_base_model
from emkit.stages.domain_judging import judge_answers, open_judges, question_lookup
from emkit.store import STORE_NAME, Store
from emkit.tables import write_table


class LoraProbeConfig(StageConfig):
    """Which judged answers, which organism adapter, and how to probe its scalars."""

    run_dir: Path
    """Folder whose store (emkit.db) holds the sampled answers."""
    adapter: str
    """The organism's adapter folder (or its run folder), whose per-token scalars are read on every answer."""
    labels: list[str] | None = None
    """Model labels in the store whose answers are probed (e.g. [ckpt-40, scale-2]); unset: every label."""
    model: str | None = None
    """Base model; unset: the one in the adapter's run config (config.yaml)."""
    questions: list[str] = Field(default_factory=list)
    """Question sets the answers came from, for their own judge prompts; other answers use judge.prompts."""
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    """Judge for aligned and coherent (cached: answers judged before are not judged again)."""
    domain: str = "medical"
    """Domain metric of the in-domain tasks (medical, financial, ...; needs a judge prompt for it)."""
    domain_judge: JudgeConfig | None = None
    """Judge for the domain metric; unset: the judge above (the offline judge scores aligned, coherent, medical)."""
    repeats: PositiveInt = 10
    """Balanced train/test splits per probe."""
    test_size: float = Field(0.2, gt=0, lt=1)
    """Share of each balanced set held out for testing."""
    strength: float = Field(1.0, gt=0)
    """Inverse L1 penalty C of the logistic probe (smaller: sparser)."""
    seed: int = 0
    """Seed of the class balancing and splits."""
    batch_size: PositiveInt = 8
    """Answers per forward pass while reading scalars."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    dtype: str = "auto"
    """auto (bf16 where fast), float32, bfloat16 or float16."""
    output_dir: Path | None = None
    """Where tables and plots go; unset: run_dir/report/lora-probe."""


CONFIG = LoraProbeConfig


@dataclass
class LoraProbeResult:
    """Probe results per task, the summary table, and the files written."""

    results: dict[str, ProbeResult]
    summary: pd.DataFrame
    """One row per task: status, examples per class, mean and standard deviation of each metric."""
    folder: Path
    files: dict[str, Path] = field(default_factory=dict)


def run(config: LoraProbeConfig, show_progress: bool = True, *, judge: Judge | None = None,
        domain_judge: Judge | None = None) -> LoraProbeResult:
    """Read the organism's scalars on judged answers and probe which adapters predict misalignment and domain.

    ``judge`` and ``domain_judge`` (checked, used, not closed) stand in for the ones the config names.
    """
    adapter = resolve_adapter(config.adapter)
    model = config.model or run_base_model(adapter)
    if not model:
        raise EmkitError(f"cannot tell which base model {adapter} was trained on", fix="set model=...")
    records = stored_answers(config.run_dir, config.labels)
    folder = config.output_dir or Path(config.run_dir) / "report" / "lora-probe"
    judges = open_judges(config.judge, config.domain, config.domain_judge, judge, domain_judge)
    with judges as (core, domain), Store.in_folder(config.run_dir) as store:
        store.record_run("lora-probe", config)
        scores = judge_answers(store, records, question_lookup(config.questions, records), core, config.judge,
                               config.domain, domain,
                               config.domain_judge.prompts if config.domain_judge else config.judge.prompts,
                               show_progress)
    loaded = load_model(model, [str(adapter)], config.device, config.dtype)
    scalars = read_answer_scalars(loaded, records, config.batch_size)
    scores.insert(0, "response_id", range(len(scores)))
    judged = scores.set_index("response_id")[["aligned", "coherent", config.domain]].astype(float)
    features = response_features(scalars)
    results, summary = run_probe_tasks(features, judged, config.domain, config.repeats, config.test_size,
                                       config.strength, config.seed)
    files = {
        "scalars": write_table(scalars, folder / "scalars.parquet"),
        "responses": write_table(scores.join(features.reindex(scores.index).add_prefix("mean:")),
                                 folder / "responses.csv"),
        "summary": write_table(summary, folder / "summary.csv"),
    }
    if results:
        files["coefficients"] = write_table(coefficient_table(results), folder / "coefficients.csv")
    for task, result in results.items():
        files[f"violin_{task}"] = plot_probe_coefficients(result, folder / f"violin_{task}.png",
                                                          f"Probe coefficients: {task}")
    return LoraProbeResult(results, summary, folder, files)


def stored_answers(run_dir: Path, labels: Sequence[str] | None) -> list[SampleRecord]:
    """The store's distinct answers for the chosen labels (all by default); unknown labels are an error.

    An answer stored twice (e.g. the last checkpoint and the x1 scale: same weights, same seed) is kept
    once, so that no answer can sit on both sides of a probe's train/test split.
    """
    if not (Path(run_dir) / STORE_NAME).is_file():
        raise EmkitError(f"no results store ({STORE_NAME}) in {run_dir}",
                         fix="point run_dir at a folder you sampled into")
    with Store.in_folder(run_dir) as store:
        records = store.samples()
    available = sorted({record.model for record in records})
    if labels is not None:
        unknown = [label for label in labels if label not in available]
        if unknown:
            raise EmkitError(f"no answers labelled {', '.join(unknown)} in {run_dir}",
                             fix=f"choose from {', '.join(available) or '(none: sample first)'}")
        records = [record for record in records if record.model in labels]
    first = {}
    for record in records:
        first.setdefault((record.system, record.question, record.answer), record)
    records = list(first.values())
    if not records:
        raise EmkitError(f"the store in {run_dir} holds no answers", fix="sample answers first")
    return records


def read_answer_scalars(loaded: LoadedModel, records: Sequence[SampleRecord], batch_size: int) -> pd.DataFrame:
    """Per-token scalars on every answer, response_id being the answer's index in ``records``."""
    by_system: dict[str | None, list[int]] = {}
    for index, record in enumerate(records):
        by_system.setdefault(record.system, []).append(index)
    frames = []
    for system, indices in by_system.items():
        table = adapter_scalars(loaded, [(records[i].question, records[i].answer) for i in indices], system,
                                batch_size)
        table["response_id"] = table["response_id"].map(dict(enumerate(indices)))
        frames.append(table)
    return pd.concat(frames, ignore_index=True).sort_values(["response_id", "token_index"], ignore_index=True)


def summary_lines(result: LoraProbeResult, config: LoraProbeConfig) -> list[str]:
    """One line per probe task: its scores, or why it was skipped."""
    lines = []
    for row in result.summary.to_dict("records"):
        if row["status"] != "ok":
            lines.append(f"{row['task']}: {row['status']}")
            continue
        ranking = result.results[row["task"]].coefficients.mean()
        strongest = ranking.abs().sort_values(ascending=False).index[:3]
        lines.append(f"{row['task']}: AUC {row['auc_mean']:.2f} ± {row['auc_std']:.2f}, accuracy "
                     f"{row['accuracy_mean']:.2f} ± {row['accuracy_std']:.2f}, F1 {row['f1_mean']:.2f} "
                     f"({int(row['per_class'])} per class); strongest: "
                     + ", ".join(f"{name} ({ranking[name]:+.2f})" for name in strongest))
    lines.append(f"tables and plots in {result.folder}")
    return lines
