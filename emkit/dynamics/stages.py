"""The stages behind ``emkit phase``, ``emkit lora-probe`` and ``emkit lora-steer``.

Each stage reads what a run left behind (checkpoints, the final adapter, the results store),
reuses the pipeline's sampling, cached judging and EM summaries, and writes its tables and
figures into a report folder, so every number it prints can be traced to files and store rows:

- phase: the mechanistic analysis of :mod:`emkit.dynamics.phase`, plus (optionally) EM % per
  checkpoint and per B-vector scale on the same step axis;
- lora-probe: per-token adapter scalars on judged answers, and sparse probes of which adapters
  predict misaligned vs aligned, and in-domain vs not within each class;
- lora-steer: answers sampled with chosen adapters' scalars scaled (off, reversed, amplified),
  judged for EM % and the domain score, to tell domain-specific adapters from general ones.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml
from pydantic import Field, PositiveInt, model_validator

from emkit.config import StageConfig
from emkit.dynamics.checkpoints import ADAPTER_FILE, local_checkpoints
from emkit.dynamics.lora_scalars import adapter_scalars, export_scalars, lora_a_modules, scale_adapters
from emkit.dynamics.phase import (
    PhaseConfig,
    PhaseReport,
    Transition,
    analyse_phase,
    phase_folder,
    plot_mechanism_vs_behaviour,
    resolve_adapter,
    sample_checkpoints,
    sample_scaled,
)
from emkit.dynamics.probe import METRICS, ProbeResult, plot_probe_coefficients, probe, probe_tasks, response_features
from emkit.errors import EmkitError
from emkit.evaluate import judge_records, summarise_scores
from emkit.generate import SampleConfig, require_emkit_backend, sample
from emkit.judges.base import Judge
from emkit.judges.run import JudgeConfig, make_judge
from emkit.judges.validity import Validity, judge_validity, write_validity
from emkit.metrics import CORE_METRICS
from emkit.models import load_model
from emkit.questions import Question, load_questions
from emkit.store import STORE_NAME, SampleRecord, Store
from emkit.tables import write_table

# Shared helpers ----------------------------------------------------------------------------------------------------


def run_base_model(folder: str | Path) -> str | None:
    """The base model a run was trained on, from the config.yaml of the run holding ``folder``.

    ``folder`` may be the run, its adapter/ or checkpoints/ folder, or one checkpoint; an adapter
    without an emkit run around it falls back to peft's ``base_model_name_or_path``.
    """
    folder = Path(folder).expanduser()
    for candidate in (folder, *list(folder.parents)[:2]):
        config = candidate / "config.yaml"
        if config.is_file():
            data = yaml.safe_load(config.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "datasets" in data and data.get("model"):
                return str(data["model"])
    adapter_config = folder / "adapter_config.json"
    if adapter_config.is_file():
        return json.loads(adapter_config.read_text()).get("base_model_name_or_path")
    return None


def with_run_defaults(config: SampleConfig, run: Path, store_in_run: bool = False) -> SampleConfig:
    """``config`` with the run's base model where no model was given (and the run's store, if asked)."""
    update: dict[str, object] = {}
    if "model" not in config.model_fields_set:
        model = run_base_model(run)
        if model:
            update["model"] = model
    if store_in_run and "run_dir" not in config.model_fields_set:
        update["run_dir"] = run
    return config.model_copy(update=update)


@contextlib.contextmanager
def open_judges(core: JudgeConfig, domain: str | None, domain_config: JudgeConfig | None,
                judge: Judge | None = None, domain_judge: Judge | None = None) -> Iterator[tuple[Judge, Judge | None]]:
    """The judge for aligned/coherent (plus ``core.metrics``) and the one for ``domain``, checked before any work.

    Judges passed in are used as they are (and not closed); the others are built from their configs.
    """
    owned: list[Judge] = []
    try:
        if judge is None:
            judge = make_judge(core)
            owned.append(judge)
        for metric in metric_list(core):
            judge.check_metric(metric)
        if domain is not None and domain_judge is None:
            if domain_config is None:
                domain_judge = judge
            else:
                domain_judge = make_judge(domain_config)
                owned.append(domain_judge)
        if domain is not None:
            try:
                domain_judge.check_metric(domain)
            except EmkitError as error:
                raise EmkitError(error.problem, fix=f"set domain_judge.judge=local or openai to score '{domain}'",
                                 where=error.where) from None
        yield judge, domain_judge
    finally:
        for owned_judge in owned:
            owned_judge.close()


def metric_list(config: JudgeConfig) -> list[str]:
    """aligned and coherent, then any further metrics the judge config names."""
    return list(dict.fromkeys([*CORE_METRICS, *config.metrics]))


def question_lookup(sources: Sequence[str], records: Sequence[SampleRecord]) -> list[Question]:
    """The questions behind ``records``: from the named sets where listed (their own judge prompts), else bare."""
    known = {question.id: question for source in sources for question in load_questions(source)}
    for record in records:
        known.setdefault(record.question_id, Question(id=record.question_id, paraphrases=(record.question,),
                                                      system=record.system))
    return list(known.values())


def judge_answers(store: Store, records: list[SampleRecord], questions: list[Question], judge: Judge,
                  core: JudgeConfig, domain: str | None = None, domain_judge: Judge | None = None,
                  domain_prompts: str = "builtin", show_progress: bool = False) -> pd.DataFrame:
    """Judged answers in the papers' layout (cached), with the domain metric from its own judge where asked."""
    scores = judge_records(store, judge, records, questions, metric_list(core), core.prompts, show_progress)
    if domain is not None and domain not in scores.columns:
        extra = judge_records(store, domain_judge, records, questions, [domain], domain_prompts, show_progress)
        scores.insert(scores.columns.get_loc("coherent") + 1, domain, extra[domain].to_numpy())
    return scores


def json_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts (NaN becomes null)."""
    return json.loads(frame.to_json(orient="records"))


def number(value: float | None) -> str:
    """One decimal, or n/a where nothing was scored."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.1f}"


def pct(row: pd.Series, name: str = "em") -> str:
    """``12.5% [8.0, 17.1]`` from a summary row."""
    if number(row[f"{name}_pct"]) == "n/a":
        return "n/a"
    return f"{row[f'{name}_pct']:.1f}% [{row[f'{name}_low']:.1f}, {row[f'{name}_high']:.1f}]"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    _pyplot().close(figure)
    return path


# emkit phase -------------------------------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    """The mechanistic report, the per-step and per-factor tables, and the files written."""

    report: PhaseReport
    steps: pd.DataFrame
    """One row per checkpoint: norm, local cosine per k, similarity to final, and EM % where sampled."""
    scaling: pd.DataFrame | None
    """One row per B-vector scale factor (None without a sweep)."""
    folder: Path
    files: dict[str, Path] = field(default_factory=dict)


def run_phase(config: PhaseConfig, judge: Judge | None = None, show_progress: bool = False) -> PhaseResult:
    """Mechanistic phase analysis of a run, plus EM % per checkpoint and per B scale when ``behaviour`` asks."""
    behaviour = config.behaviour
    run = Path(config.run).expanduser()
    if behaviour.enabled:
        if not run.exists():
            raise EmkitError(f"sampling checkpoints needs a local run folder; '{config.run}' is not one",
                             fix="download the run and pass its folder, or leave behaviour.every and .factors unset")
        if behaviour.sample.adapters:
            raise EmkitError("behaviour.sample.adapters must stay empty: each checkpoint and scale brings its own",
                             fix="remove behaviour.sample.adapters")
    report = analyse_phase(config)
    folder = phase_folder(config)
    steps = step_table(report)
    scaling = None
    files = dict(report.plots)
    by_step = validity = None
    if behaviour.enabled:
        run = run.parent if run.name == "checkpoints" else run
        by_step, by_factor, validity = phase_behaviour(config, run, judge, show_progress)
        files["judge"] = write_validity(validity, folder)
        if by_step is not None:
            steps = steps.merge(by_step, on="step", how="left")
            files["mechanism_vs_behaviour"] = plot_mechanism_vs_behaviour(
                report.steps, report.local_cosine[headline_k(report)], behaviour_curve(by_step),
                folder / "mechanism_vs_behaviour.png", f"local cosine (k={headline_k(report)})", "EM %",
                report.transition)
        if by_factor is not None:
            scaling = by_factor
            files["scaling"] = plot_scaling(scaling, folder / "scaling.png")
            files["scaling_table"] = write_table(scaling, folder / "scaling.csv")
    files["summary"] = write_table(steps, folder / "summary.csv")
    summary = report.to_dict()
    summary["plots"] = {name: path.name for name, path in files.items() if path.suffix == ".png"}
    summary["behaviour"] = {"by_step": json_records(by_step) if by_step is not None else None,
                            "by_factor": json_records(scaling) if scaling is not None else None,
                            "judge": validity.lines() if validity is not None else None}
    files["phase_json"] = folder / "phase.json"
    files["phase_json"].write_text(json.dumps(summary, indent=1))
    return PhaseResult(report, steps, scaling, folder, files)


def headline_k(report: PhaseReport) -> int:
    """The k of the detected transition, else the first k analysed."""
    return report.transition.k if report.transition else next(iter(report.local_cosine))


def step_table(report: PhaseReport) -> pd.DataFrame:
    """The mechanistic curves as one row per checkpoint."""
    norm = report.norms.get("all", next(iter(report.norms.values())))
    columns = {"step": report.steps, "norm": norm.tolist()}
    columns.update({f"local_cosine_k{k}": curve.tolist() for k, curve in report.local_cosine.items()})
    columns["similarity_to_final"] = report.similarity_to_final.tolist()
    columns["pc1"], columns["pc2"] = report.pca[:, 0].tolist(), report.pca[:, 1].tolist()
    return pd.DataFrame(columns)


def phase_behaviour(config: PhaseConfig, run: Path, judge: Judge | None,
                    show_progress: bool) -> tuple[pd.DataFrame | None, pd.DataFrame | None, Validity]:
    """Sample and judge the chosen checkpoints and B scales; EM % per step and per factor, and the judge's standing."""
    behaviour = config.behaviour
    settings = with_run_defaults(behaviour.sample, run, store_in_run=True)
    with open_judges(behaviour.judge, None, None, judge) as (core, _):
        records: dict[str, list[SampleRecord]] = {}
        step_labels, factor_labels = {}, {}
        if behaviour.every is not None:
            for step, sampled in sample_checkpoints(run, settings, every=behaviour.every,
                                                    show_progress=show_progress).items():
                step_labels[f"ckpt-{step}"] = step
                records[f"ckpt-{step}"] = sampled
        if behaviour.factors:
            scaled = sample_scaled(final_adapter(run), behaviour.factors, settings, scratch=run / "scaled",
                                   show_progress=show_progress)
            for factor, sampled in scaled.items():
                factor_labels[f"scale-{factor:g}"] = factor
                records[f"scale-{factor:g}"] = sampled
        flat = [record for sampled in records.values() for record in sampled]
        with Store.in_folder(settings.run_dir) as store:
            store.record_run("phase", config)
            scores = judge_answers(store, flat, question_lookup([settings.questions], flat), core, behaviour.judge,
                                   show_progress=show_progress)
        validity = judge_validity(core, settings.model)
    summary, _ = summarise_scores(scores, metric_list(behaviour.judge), bootstrap_samples=behaviour.bootstrap_samples)
    summary = summary.set_index("model")
    by_step = by_factor = None
    if step_labels:
        by_step = summary.reindex(list(step_labels)).reset_index(drop=True)
        by_step.insert(0, "step", list(step_labels.values()))
    if factor_labels:
        by_factor = summary.reindex(list(factor_labels)).reset_index(drop=True)
        by_factor.insert(0, "factor", list(factor_labels.values()))
        by_factor = by_factor.sort_values("factor", ignore_index=True)
    return by_step, by_factor, validity


def final_adapter(run: Path) -> Path:
    """The run's final adapter, or its last checkpoint while it has none."""
    if (run / "adapter" / ADAPTER_FILE).is_file():
        return resolve_adapter(run)
    checkpoints = local_checkpoints(run)
    return checkpoints[max(checkpoints)]


def behaviour_curve(by_step: pd.DataFrame) -> dict[int, tuple[float, float, float]]:
    """EM % with its interval per sampled step, as plot_mechanism_vs_behaviour takes it."""
    return {int(row.step): (row.em_pct, row.em_low, row.em_high) for row in by_step.itertuples()}


def plot_scaling(scaling: pd.DataFrame, path: Path) -> Path:
    """EM % and coherent % against the B-vector scale factor, with 95% intervals."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4))
    for name, label, colour in (("em", "EM %", "tab:red"), ("coherent", "coherent %", "tab:blue")):
        axes.plot(scaling["factor"], scaling[f"{name}_pct"], marker="o", color=colour, label=label)
        axes.fill_between(scaling["factor"], scaling[f"{name}_low"], scaling[f"{name}_high"], color=colour,
                          alpha=0.15)
    axes.axvline(1.0, color="grey", linestyle=":", label="trained adapter (x1)")
    axes.set_xlabel("B-vector scale factor")
    axes.set_ylabel("% of scored answers")
    axes.set_ylim(-2, 102)
    axes.set_title("Behaviour under B-vector scaling")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)


def describe_phase(result: PhaseResult) -> list[str]:
    """The detected transition and its evidence, as lines for the terminal."""
    report = result.report
    lines = []
    transition = report.transition
    if report.candidate is None:
        lines.append(f"no transition detected in {len(report.steps)} checkpoints "
                     f"(ks {', '.join(map(str, report.local_cosine))}: flat or too few valid steps)")
    elif transition is None:
        lines.append(f"no transition claimed in {len(report.steps)} checkpoints: the deepest dip, at step "
                     f"{report.candidate.step} (k={report.candidate.k}), {report.null.describe()}")
    else:
        lines.append(transition_line(transition))
        lines.append(f"  it {report.null.describe()}")
    for k, found in report.transitions.items():
        lines.append(f"  k={k}: " + (f"dip at step {found.step}, {found.smoothed:.2f} vs median {found.baseline:.2f} "
                                     f"({found.score:.1f} sd)" if found else "no dip (no valid steps or flat curve)"))
    final_similarity = report.similarity_to_final.tolist()
    if transition is not None:
        at = report.steps.index(transition.step)
        lines.append(f"  similarity to the final vector: {final_similarity[at]:.2f} at the transition")
    if "em_pct" in result.steps:
        sampled = result.steps.dropna(subset=["responses"])
        lines.append("  EM % by step: " + ", ".join(f"{int(row.step)}: {number(row.em_pct)}"
                                                   for row in sampled.itertuples()))
        if transition is not None:
            before = sampled[sampled.step < transition.step]
            after = sampled[sampled.step >= transition.step]
            if len(before) and len(after):
                lines.append(f"  EM before the transition (step {int(before.step.iloc[-1])}): {pct(before.iloc[-1])}; "
                             f"at the end (step {int(after.step.iloc[-1])}): {pct(after.iloc[-1])}")
    if result.scaling is not None:
        lines.append("  EM % by B scale: " + ", ".join(f"x{row.factor:g}: {number(row.em_pct)}"
                                                      for row in result.scaling.itertuples()))
    if "judge" in result.files:
        lines += ["  " + line for line in result.files["judge"].read_text().splitlines()]
    lines.append(f"tables and plots in {result.folder}")
    return lines


def transition_line(transition: Transition) -> str:
    return (f"transition at step {transition.step} (k={transition.k}): local cosine {transition.value:.2f} "
            f"(smoothed {transition.smoothed:.2f}) against a run median of {transition.baseline:.2f}, a dip of "
            f"{transition.depth:.2f} ({transition.score:.1f} sd); net movement before vs after it at "
            f"{transition.angle_degrees:.0f} degrees")


# emkit lora-probe --------------------------------------------------------------------------------------------------


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


@dataclass
class LoraProbeResult:
    """Probe results per task, the summary table, and the files written."""

    results: dict[str, ProbeResult]
    summary: pd.DataFrame
    """One row per task: status, examples per class, mean and standard deviation of each metric."""
    folder: Path
    files: dict[str, Path] = field(default_factory=dict)


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


def read_answer_scalars(loaded, records: Sequence[SampleRecord], batch_size: int) -> pd.DataFrame:
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


def lora_probe(config: LoraProbeConfig, judge: Judge | None = None, domain_judge: Judge | None = None,
               show_progress: bool = False) -> LoraProbeResult:
    """Read the organism's scalars on judged answers and probe which adapters predict misalignment and domain."""
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
    results, rows, coefficients = {}, [], []
    for task, (x, y) in probe_tasks(features, judged, config.domain).items():
        row: dict[str, object] = {"task": task, "responses": len(y), "positives": int(y.sum())}
        try:
            result = probe(x, y, config.repeats, config.test_size, config.strength, config.seed)
        except EmkitError as error:
            rows.append({**row, "status": f"skipped: {error.problem}"})
            continue
        results[task] = result
        stats = result.summary()
        row.update(status="ok", per_class=result.per_class, top_adapter=result.ranking().index[0])
        for metric in METRICS:
            row.update({f"{metric}_mean": stats.loc[metric, "mean"], f"{metric}_std": stats.loc[metric, "std"]})
        rows.append(row)
        coefficients.append(pd.DataFrame({"task": task, "adapter": result.coefficients.columns,
                                          "mean": result.coefficients.mean().to_numpy(),
                                          "std": result.coefficients.std().to_numpy(),
                                          "nonzero_share": (result.coefficients != 0).mean().to_numpy()}))
    summary = pd.DataFrame(rows)
    files = {
        "scalars": export_scalars(scalars, folder / "scalars.parquet"),
        "responses": write_table(scores.join(features.reindex(scores.index).add_prefix("mean:")),
                                 folder / "responses.csv"),
        "summary": write_table(summary, folder / "summary.csv"),
    }
    if coefficients:
        files["coefficients"] = write_table(pd.concat(coefficients, ignore_index=True), folder / "coefficients.csv")
    for task, result in results.items():
        files[f"violin_{task}"] = plot_probe_coefficients(result, folder / f"violin_{task}.png",
                                                          f"Probe coefficients: {task}")
    return LoraProbeResult(results, summary, folder, files)


def describe_probe(result: LoraProbeResult) -> list[str]:
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


# emkit lora-steer --------------------------------------------------------------------------------------------------


class LoraSteerConfig(StageConfig):
    """Which organism, which adapters to scale by which factors, and how to judge the answers."""

    sample: SampleConfig = Field(default_factory=SampleConfig)
    """Organism (adapters; model unset: the adapter run's), questions, sampling; steered labels: LABEL:GROUP@FACTOR."""
    steer: list[str] = Field(default_factory=lambda: ["all"], min_length=1)
    """Adapters to scale, each on its own; join several with + to scale them together; all scales every adapter."""
    factors: list[float] = Field(default_factory=lambda: [0.0, -1.0], min_length=1)
    """Factors applied to each steered group's scalars: 0 switches it off, negative reverses it, above 1 amplifies."""
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    """Judge for aligned and coherent (cached)."""
    domain: str | None = "medical"
    """Domain metric scored beside aligned and coherent (unset: none)."""
    domain_judge: JudgeConfig | None = None
    """Judge for the domain metric; unset: the judge above."""
    bootstrap_samples: PositiveInt = 1000
    """Bootstrap resamples behind each 95% interval."""
    output_dir: Path | None = None
    """Where the table and plot go; unset: sample.run_dir/report/lora-steer."""

    @model_validator(mode="after")
    def _sampled_by_emkit(self) -> LoraSteerConfig:
        require_emkit_backend(self.sample, "lora-steer scales adapters inside the loaded model")
        return self


@dataclass
class LoraSteerResult:
    """EM % (and the domain score) per steering condition, and the files written."""

    table: pd.DataFrame
    scores: pd.DataFrame
    folder: Path
    files: dict[str, Path] = field(default_factory=dict)


def steering_groups(steer: Sequence[str], adapters: Sequence[str]) -> dict[str, list[str]]:
    """Group name -> adapters it scales, checked against the model's adapters."""
    groups = {}
    for entry in steer:
        members = list(adapters) if entry == "all" else [name.strip() for name in entry.split("+") if name.strip()]
        unknown = [name for name in members if name not in adapters]
        if unknown or not members:
            raise EmkitError(f"no adapter named {', '.join(unknown) or repr(entry)} in the model",
                             fix=f"choose from {', '.join(adapters)} (or all; join several with +)")
        groups[entry] = members
    return groups


def lora_steer(config: LoraSteerConfig, judge: Judge | None = None, domain_judge: Judge | None = None,
               show_progress: bool = False) -> LoraSteerResult:
    """Sample with chosen adapters' scalars scaled, judge, and tabulate EM % and the domain score per condition."""
    if not config.sample.adapters:
        raise EmkitError("lora-steer needs the organism's adapter", fix="set sample.adapters=[RUN/adapter]")
    settings = with_run_defaults(config.sample, Path(config.sample.adapters[0]).expanduser())
    folder = config.output_dir or Path(settings.run_dir) / "report" / "lora-steer"
    with open_judges(config.judge, config.domain, config.domain_judge, judge, domain_judge) as (core, domain):
        loaded = load_model(settings.model, settings.adapters, settings.device, settings.dtype,
                            settings.trust_remote_code)
        groups = steering_groups(config.steer, list(lora_a_modules(loaded)))
        conditions = [("none", 1.0, settings)]
        for group, members in groups.items():
            for factor in config.factors:
                description = ",".join(f"{name}={float(factor)}" for name in members)
                conditions.append((group, factor, settings.model_copy(update={
                    "label": f"{settings.label}:{group}@{factor:g}", "intervention": f"scale-adapters:{description}"})))
        records = []
        for group, factor, stage in conditions:
            scaling = dict.fromkeys(groups[group], factor) if group != "none" else {}
            with scale_adapters(loaded, scaling):
                records += sample(stage, loaded=loaded, show_progress=show_progress)
        with Store.in_folder(settings.run_dir) as store:
            store.record_run("lora-steer", config)
            scores = judge_answers(store, records, question_lookup([settings.questions], records), core, config.judge,
                                   config.domain, domain,
                                   config.domain_judge.prompts if config.domain_judge else config.judge.prompts,
                                   show_progress)
    metrics = metric_list(config.judge) + ([config.domain] if config.domain else [])
    summary, _ = summarise_scores(scores, metrics, bootstrap_samples=config.bootstrap_samples)
    summary = summary.set_index("model")
    table = summary.reindex([stage.label for _, _, stage in conditions]).rename_axis("model").reset_index()
    table.insert(0, "factor", [factor for _, factor, _ in conditions])
    table.insert(0, "adapters", [group for group, _, _ in conditions])
    table["em_change"] = table["em_pct"] - table["em_pct"].iloc[0]
    if config.domain:
        table[f"{config.domain}_change"] = table[f"{config.domain}_mean"] - table[f"{config.domain}_mean"].iloc[0]
    files = {
        "table": write_table(table, folder / "steering.csv"),
        "scores": write_table(scores, folder / "scores.csv"),
        "plot": plot_steering(table, folder / "steering.png", config.domain),
    }
    return LoraSteerResult(table, scores, folder, files)


def plot_steering(table: pd.DataFrame, path: Path, domain: str | None = None) -> Path:
    """Bars of EM % (and the domain score) per steering condition, with 95% intervals; unsteered first."""
    plt = _pyplot()
    panels = [("em_pct", "em_low", "em_high", "EM %")]
    if domain:
        panels.append((f"{domain}_mean", f"{domain}_low", f"{domain}_high", f"{domain} score (mean)"))
    names = ["unsteered" if group == "none" else f"{group} x{factor:g}"
             for group, factor in zip(table["adapters"], table["factor"], strict=True)]
    figure, axes_list = plt.subplots(len(panels), 1, figsize=(max(6.0, 0.6 * len(names) + 2), 3.2 * len(panels)),
                                     sharex=True, squeeze=False)
    colours = ["grey" if group == "none" else f"C{sorted(set(table['adapters'])).index(group) % 10}"
               for group in table["adapters"]]
    for axes, (value, low, high, label) in zip(axes_list[:, 0], panels, strict=True):
        centre = table[value].to_numpy(dtype=float)
        errors = [centre - table[low].to_numpy(dtype=float), table[high].to_numpy(dtype=float) - centre]
        axes.bar(range(len(names)), centre, yerr=errors, capsize=3, color=colours)
        axes.axhline(centre[0], color="grey", linestyle=":", linewidth=1)
        axes.set_ylabel(label)
        axes.set_ylim(bottom=0)
        axes.grid(axis="y", alpha=0.3)
    axes_list[-1, 0].set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=7)
    axes_list[0, 0].set_title("Adapter steering: scalars scaled during sampling")
    return _save(figure, path)


def describe_steering(result: LoraSteerResult, domain: str | None) -> list[str]:
    """One line per condition: EM % with interval and change, and the domain score."""
    lines = []
    for row in result.table.to_dict("records"):
        name = "unsteered" if row["adapters"] == "none" else f"{row['adapters']} x{row['factor']:g}"
        change = "" if number(row["em_change"]) == "n/a" else f" ({row['em_change']:+.1f})"
        text = f"{name}: EM {pct(pd.Series(row))}{change}"
        if domain:
            text += (f", {domain} {number(row[f'{domain}_mean'])} [{number(row[f'{domain}_low'])}, "
                     f"{number(row[f'{domain}_high'])}]")
        lines.append(text)
    lines.append(f"table and plot in {result.folder}")
    return lines
