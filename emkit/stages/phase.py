"""``emkit phase``: the mechanistic phase transition of a LoRA run, optionally against EM % per checkpoint.

Reads the run's checkpoints, runs the analysis of :mod:`emkit.dynamics.phase` and draws its figures; where
``behaviour`` asks, samples and judges chosen checkpoints and B-vector scales (answers in the run's own store)
and puts EM % on the same step axis. Writes summary.csv, scaling.csv, the figures and phase.json (everything the
analysis found) into the report folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from emkit.config import StageConfig
from emkit.dynamics.checkpoints import read_checkpoints
from emkit.dynamics.phase import PhaseReport, Transition, phase_report
from emkit.dynamics.phase_plots import plot_mechanism_vs_behaviour, plot_phase, plot_scaling
from emkit.errors import EmkitError
from emkit.judges.base import Judge
from emkit.judges.run import JudgeConfig
from emkit.judges.validity import Validity, judge_validity, write_validity
from emkit.records import SampleRecord
from emkit.sampling.config import SampleConfig
from emkit.stages.checkpoint_runs import final_adapter, sample_checkpoints, sample_scaled, with_run_defaults
from emkit.stages.domain_judging import judge_answers, metric_list, number, open_judges, pct, question_lookup
from emkit.stages.evaluate import summarise_scores
from emkit.store import Store
from emkit.tables import write_table


class PhaseBehaviour(BaseModel):
    """The behavioural side of the phase analysis: which checkpoints and B-vector scales to sample and judge."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, protected_namespaces=())

    every: PositiveInt | None = None
    """Sample every n-th checkpoint (and always the last); unset: no checkpoint sampling."""
    factors: list[float] = Field(default_factory=list)
    """Scale the final adapter's B vectors by each factor and sample (e.g. [0, 0.5, 1, 2]); empty: no sweep."""
    sample: SampleConfig = Field(default_factory=SampleConfig)
    """Questions and sampling; model unset: the run's base model; run_dir unset: the run's store; no adapters."""
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    """Judge and metrics for EM % and coherent % (domain metrics in judge.metrics add their mean scores)."""
    bootstrap_samples: PositiveInt = 1000
    """Bootstrap resamples behind each 95% interval."""

    @property
    def enabled(self) -> bool:
        return self.every is not None or bool(self.factors)


class PhaseConfig(StageConfig):
    """Which run, which vector and which local-cosine settings the phase analysis uses."""

    run: str
    """Local run folder (or its checkpoints/ folder), or a hub repo id with checkpoint-N folders."""
    revision: str | None = None
    """Hub branch, tag or commit (hub runs only)."""
    vector: Literal["A", "B"] = "B"
    """Which LoRA vector to follow: B (the written direction, as in the paper) or A (the read direction)."""
    modules: list[str] | None = None
    """Adapter modules to analyse, e.g. [layers.24.mlp.down_proj]; unset means all, concatenated."""
    ks: list[PositiveInt] = Field(default_factory=lambda: [1, 2, 5], min_length=1)
    """Checkpoint offsets k of the local cosine similarity."""
    threshold: float = Field(0.1, ge=0)
    """Skip steps whose change over k checkpoints is below this fraction of the run's median change."""
    smooth: PositiveInt = 1
    """Centred moving-average window (checkpoints) applied before looking for the dip."""
    max_dip: float | None = None
    """Report a transition only where the smoothed local cosine falls to this value or below (e.g. 0.5)."""
    min_step: int = Field(0, ge=0)
    """Look for the dip from this training step on (B's first moves away from zero are Adam's sign-like steps)."""
    null_permutations: PositiveInt = 200
    """Shuffled-order trajectories (the run's own movements in random order) that calibrate the transition claim."""
    null_quantile: float = Field(0.95, gt=0, lt=1)
    """A transition is claimed only when its dip (in sd) exceeds this quantile of the shuffled runs' deepest dips."""
    output_dir: Path | None = None
    """Where phase.json, the tables and the plots go; unset means the run folder's report/phase/ (local runs)."""
    behaviour: PhaseBehaviour = Field(default_factory=PhaseBehaviour)
    """Also sample, judge and plot EM % per checkpoint and per B-vector scale (set behaviour.every or .factors)."""


CONFIG = PhaseConfig


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


def run(config: PhaseConfig, show_progress: bool = True, *, judge: Judge | None = None) -> PhaseResult:
    """Mechanistic phase analysis of a run, plus EM % per checkpoint and per B scale when ``behaviour`` asks.

    ``judge`` (checked, used, not closed) stands in for the one ``behaviour.judge`` names.
    """
    behaviour = config.behaviour
    run_folder = Path(config.run).expanduser()
    if behaviour.enabled:
        if not run_folder.exists():
            raise EmkitError(f"sampling checkpoints needs a local run folder; '{config.run}' is not one",
                             fix="download the run and pass its folder, or leave behaviour.every and .factors unset")
        if behaviour.sample.adapters:
            raise EmkitError("behaviour.sample.adapters must stay empty: each checkpoint and scale brings its own",
                             fix="remove behaviour.sample.adapters")
    report = phase_report(read_checkpoints(config.run, revision=config.revision), config)
    folder = phase_folder(config)
    folder.mkdir(parents=True, exist_ok=True)
    files = plot_phase(report, folder)
    steps = step_table(report)
    by_step = scaling = validity = None
    if behaviour.enabled:
        run_folder = run_folder.parent if run_folder.name == "checkpoints" else run_folder
        by_step, scaling, validity = phase_behaviour(config, run_folder, judge, show_progress)
        files["judge"] = write_validity(validity, folder)
        if by_step is not None:
            steps = steps.merge(by_step, on="step", how="left")
            files["mechanism_vs_behaviour"] = plot_mechanism_vs_behaviour(
                report.steps, report.local_cosine[report.headline_k()], behaviour_curve(by_step),
                folder / "mechanism_vs_behaviour.png", f"local cosine (k={report.headline_k()})", "EM %",
                report.transition)
        if scaling is not None:
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


def phase_folder(config: PhaseConfig) -> Path:
    """Where the phase analysis writes: output_dir, else the local run folder's report/phase/."""
    if config.output_dir is not None:
        return config.output_dir
    run_folder = Path(config.run).expanduser()
    if not run_folder.exists():
        raise EmkitError("a hub run needs output_dir for its phase analysis", fix="set output_dir=...")
    return (run_folder.parent if run_folder.name == "checkpoints" else run_folder) / "report" / "phase"


def step_table(report: PhaseReport) -> pd.DataFrame:
    """The mechanistic curves as one row per checkpoint."""
    norm = report.norms.get("all", next(iter(report.norms.values())))
    columns = {"step": report.steps, "norm": norm.tolist()}
    columns.update({f"local_cosine_k{k}": curve.tolist() for k, curve in report.local_cosine.items()})
    columns["similarity_to_final"] = report.similarity_to_final.tolist()
    columns["pc1"], columns["pc2"] = report.pca[:, 0].tolist(), report.pca[:, 1].tolist()
    return pd.DataFrame(columns)


def phase_behaviour(config: PhaseConfig, run_folder: Path, judge: Judge | None,
                    show_progress: bool) -> tuple[pd.DataFrame | None, pd.DataFrame | None, Validity]:
    """Sample and judge the chosen checkpoints and B scales; EM % per step and per factor, and the judge's standing."""
    behaviour = config.behaviour
    settings = with_run_defaults(behaviour.sample, run_folder, store_in_run=True)
    with open_judges(behaviour.judge, None, None, judge) as (core, _):
        records: dict[str, list[SampleRecord]] = {}
        step_labels, factor_labels = {}, {}
        if behaviour.every is not None:
            for step, sampled in sample_checkpoints(run_folder, settings, every=behaviour.every,
                                                    show_progress=show_progress).items():
                step_labels[f"ckpt-{step}"] = step
                records[f"ckpt-{step}"] = sampled
        if behaviour.factors:
            scaled = sample_scaled(final_adapter(run_folder), behaviour.factors, settings,
                                   scratch=run_folder / "scaled", show_progress=show_progress)
            for factor, sampled in scaled.items():
                factor_labels[f"scale-{factor:g}"] = factor
                records[f"scale-{factor:g}"] = sampled
        flat = [record for sampled in records.values() for record in sampled]
        with Store.in_folder(settings.run_dir) as store:
            store.record_run("phase", config)
            scores = judge_answers(store, flat, question_lookup([settings.questions], flat), core, behaviour.judge,
                                   show_progress=show_progress)
        validity = judge_validity(core, settings.model, settings.questions)
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


def behaviour_curve(by_step: pd.DataFrame) -> dict[int, tuple[float, float, float]]:
    """EM % with its interval per sampled step, as plot_mechanism_vs_behaviour takes it."""
    return {int(row.step): (row.em_pct, row.em_low, row.em_high) for row in by_step.itertuples()}


def json_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts (NaN becomes null)."""
    return json.loads(frame.to_json(orient="records"))


def summary_lines(result: PhaseResult, config: PhaseConfig) -> list[str]:
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
        lines += behaviour_lines(result.steps, transition)
    if result.scaling is not None:
        lines.append("  EM % by B scale: " + ", ".join(f"x{row.factor:g}: {number(row.em_pct)}"
                                                      for row in result.scaling.itertuples()))
    if "judge" in result.files:
        lines += ["  " + line for line in result.files["judge"].read_text().splitlines()]
    lines.append(f"tables and plots in {result.folder}")
    return lines


def behaviour_lines(steps: pd.DataFrame, transition: Transition | None) -> list[str]:
    """EM % per sampled step, and EM just before the transition against the end of training."""
    sampled = steps.dropna(subset=["responses"])
    lines = ["  EM % by step: " + ", ".join(f"{int(row.step)}: {number(row.em_pct)}" for row in sampled.itertuples())]
    if transition is not None:
        before = sampled[sampled.step < transition.step]
        after = sampled[sampled.step >= transition.step]
        if len(before) and len(after):
            lines.append(f"  EM before the transition (step {int(before.step.iloc[-1])}): {pct(before.iloc[-1])}; "
                         f"at the end (step {int(after.step.iloc[-1])}): {pct(after.iloc[-1])}")
    return lines


def transition_line(transition: Transition) -> str:
    """The claimed transition, its dip and the angle of the turn, in one line."""
    return (f"transition at step {transition.step} (k={transition.k}): local cosine {transition.value:.2f} "
            f"(smoothed {transition.smoothed:.2f}) against a run median of {transition.baseline:.2f}, a dip of "
            f"{transition.depth:.2f} ({transition.score:.1f} sd); net movement before vs after it at "
            f"{transition.angle_degrees:.0f} degrees")
