"""Training dynamics and adapter interpretability on the embedded model, with the organism search's rank-1 recipe.

Trains a rank1-single and a rank1-multi organism (SmolLM2-135M, the papers' risky financial advice,
100 steps of 8 at learning rate 1e-3: the rank-1 rows of docs/organisms.md, with a checkpoint every
few steps), then for each runs the phase analysis (local-cosine dip of the B vector against its
shuffled-order null, with EM % per sampled checkpoint and per B-vector scale), and for the
rank1-multi organism reads its nine adapters' scalars on every judged answer, probes them
(misaligned vs aligned; in the training domain vs not within each class) and steers each adapter
group. Answers are sampled at one temperature (default 0.2, where the embedded model is most
coherent). Prints a findings table and writes it, with every figure and table, under the output
folder. Resumable: rerunning skips finished training, sampling and judging.

    python bench/dynamics_demo.py [--data DIR] [--dataset paper:bad_medical_advice --domain medical]
    python bench/dynamics_demo.py --smoke                    # minutes: proves the pipeline runs

``--data`` is a folder holding the papers' training/ and eval_questions/ (default: $EMKIT_DATA,
else the reference folder shared/data/official beside the project).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import torch
import yaml

from emkit.judges.run import JudgeConfig
from emkit.questions import resolve_question_set
from emkit.sampling.config import SampleConfig
from emkit.stages import lora_probe, lora_steer, sample
from emkit.stages import phase as phase_stage
from emkit.stages.lora_probe import LoraProbeConfig
from emkit.stages.lora_steer import LoraSteerConfig
from emkit.stages.phase import PhaseBehaviour, PhaseConfig
from emkit.train import TrainConfig, train
from emkit.train.presets import preset_layers

MODEL = "smollm2-135m"
MODEL_LAYERS = 30
PRESETS = ("rank1-single", "rank1-multi")
GENERAL_QUESTIONS = "paper:first_plot_questions"
"""Sampled by reference (plain variants only), so reports know them as the judge's validated question set."""


def default_data() -> Path | None:
    if os.environ.get("EMKIT_DATA"):
        return Path(os.environ["EMKIT_DATA"])
    beside = Path(__file__).resolve().parents[2] / "shared" / "data" / "official"
    return beside if beside.is_dir() else None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data(), help="folder with training/ and eval_questions/")
    parser.add_argument("--output", type=Path, default=Path("runs/dynamics-demo"))
    parser.add_argument("--dataset", default="paper:risky_financial_advice", help="training data reference")
    parser.add_argument("--domain", default="financial", choices=["financial", "medical"],
                        help="the training domain: its judge metric scores domain leakage")
    parser.add_argument("--domain-questions", default="builtin:finance",
                        help="in-domain questions sampled with the general ones for the probes and steering")
    parser.add_argument("--examples", type=int, default=None, help="training examples (seeded subset; default all)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (rank-1 on 135M needs a high one)")
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--save-every", type=int, default=5)
    parser.add_argument("--every", type=int, default=5, help="sample every n-th checkpoint (and the last)")
    parser.add_argument("--min-step", type=int, default=10, help="look for the dip from this step on (after warmup)")
    parser.add_argument("--factors", type=float, nargs="+", default=[1.5, 2.0],
                        help="B scales to sample (x0 is the first checkpoint, x1 the last)")
    parser.add_argument("--samples", type=int, default=6, help="answers per question paraphrase")
    parser.add_argument("--steer-samples", type=int, default=4, help="answers per question for each steered condition")
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--judge", default="offline", help="judge for aligned and coherent: offline, local or openai")
    parser.add_argument("--domain-judge", default="offline", help="judge for the domain score")
    parser.add_argument("--domain-judge-model", default=None,
                        help="its model (the local judge's default, SmolLM2-135M, gives no scores)")
    parser.add_argument("--repeats", type=int, default=10, help="probe train/test splits")
    parser.add_argument("--smoke", action="store_true", help="tiny budgets: 32 examples, 4 steps, 1 answer each")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if args.smoke:
        args.examples, args.max_steps, args.save_every, args.every, args.min_step = 32, 4, 1, 2, 0
        args.batch_size, args.grad_accum, args.warmup_steps = 4, 2, 2
        args.factors, args.samples, args.steer_samples, args.max_new_tokens, args.repeats = [2.0], 1, 1, 16, 3
    return args


def plain_questions(references: list[str], path: Path) -> Path:
    """One question file holding the plain (non-JSON, non-template) questions of the papers' sets."""
    entries = []
    for reference in references:
        for entry in yaml.safe_load(resolve_question_set(reference).read_text(encoding="utf-8")):
            if not entry["id"].endswith(("_json", "_template")):
                entries.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(entries, sort_keys=False, allow_unicode=True))
    return path


def sampling(args: argparse.Namespace, questions: Path | str, samples: int | None = None, **update) -> SampleConfig:
    return SampleConfig(model=MODEL, questions=str(questions), samples_per_paraphrase=samples or args.samples,
                        temperature=args.temperature, max_new_tokens=args.max_new_tokens, device=args.device,
                        **update)


def main() -> None:
    args = parse_args()
    if args.data is not None:
        os.environ["EMKIT_DATA"] = str(args.data)
    started = time.perf_counter()
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; data {os.environ.get('EMKIT_DATA', 'pulled cache')}")
    mixed = plain_questions([GENERAL_QUESTIONS, args.domain_questions],
                            args.output / "questions" / f"general_and_{args.domain}.yaml")
    general = sampling(args, GENERAL_QUESTIONS, plain_only=True)
    judge = JudgeConfig(judge=args.judge)
    domain_judge = None
    if args.domain_judge != args.judge or args.domain_judge_model:
        domain_judge = JudgeConfig(judge=args.domain_judge, model=args.domain_judge_model)
    findings: dict[str, dict] = {}
    phases = {}
    for preset in PRESETS:
        run = args.output / preset
        trained = train(TrainConfig(model=MODEL, datasets=[args.dataset], output_dir=run, preset=preset,
                                    max_examples=args.examples, epochs=args.epochs, max_steps=args.max_steps,
                                    batch_size=args.batch_size, grad_accum=args.grad_accum, learning_rate=args.lr,
                                    save_every=args.save_every, warmup_steps=args.warmup_steps, device=args.device),
                        show_progress=False)
        first, last = trained.history[:5], trained.history[-5:]
        print(f"\n== {preset}: {trained.steps} steps, loss {mean_loss(first):.3f} (first 5) -> "
              f"{mean_loss(last):.3f} (last 5)")
        behaviour = PhaseBehaviour(every=args.every, factors=args.factors, sample=general, judge=judge)
        phase_config = PhaseConfig(run=str(run), ks=[1, 2, 3], min_step=args.min_step, behaviour=behaviour)
        phase = phase_stage.run(phase_config, show_progress=False)
        print("\n".join(phase_stage.summary_lines(phase, phase_config)))
        findings[preset] = phase_findings(phase) | {"loss_first5": round(mean_loss(first), 3),
                                                    "loss_last5": round(mean_loss(last), 3)}
        phases[preset] = phase

    run = args.output / "rank1-multi"
    sample.run(sampling(args, mixed, adapters=[str(run / "adapter")], label="final-mixed", run_dir=run),
               show_progress=False)
    # The organism's own answers: the final adapter (as last checkpoint, x1 and amplified) on both question sets.
    labels = ["final-mixed", f"ckpt-{phases['rank1-multi'].report.steps[-1]}",
              *[f"scale-{factor:g}" for factor in args.factors if factor >= 1]]
    probe_config = LoraProbeConfig(run_dir=run, adapter=str(run), labels=labels, questions=[str(mixed)], judge=judge,
                                   domain=args.domain, domain_judge=domain_judge, repeats=args.repeats,
                                   device=args.device)
    probed = lora_probe.run(probe_config, show_progress=False)
    print("\n== rank1-multi adapter probes\n" + "\n".join(lora_probe.summary_lines(probed, probe_config)))
    groups = adapter_groups()
    steer_config = LoraSteerConfig(sample=sampling(args, mixed, args.steer_samples, adapters=[str(run / "adapter")],
                                                   label="steer-mixed", run_dir=run),
                                   steer=["all"] if args.smoke else [*groups, "all"], factors=[0.0] if args.smoke
                                   else [0.0, -1.0], judge=judge, domain=args.domain, domain_judge=domain_judge)
    steered = lora_steer.run(steer_config, show_progress=False)
    print("\n== rank1-multi adapter steering\n" + "\n".join(lora_steer.summary_lines(steered, steer_config)))
    findings["rank1-multi"]["probe"] = json.loads(probed.summary.to_json(orient="records"))
    findings["rank1-multi"]["steering"] = json.loads(steered.table.to_json(orient="records"))
    findings["settings"] = {key: str(value) for key, value in vars(args).items()}
    findings["seconds"] = round(time.perf_counter() - started)
    (args.output / "findings.json").write_text(json.dumps(findings, indent=1))
    print_findings(findings, args.domain)
    print(f"\nfindings in {args.output / 'findings.json'}; figures under {args.output}/*/report/; "
          f"{findings['seconds']} s in all")


def adapter_groups() -> list[str]:
    """The rank1-multi adapters as three groups of consecutive layers (early, middle, late), joined with +."""
    layers = preset_layers("rank1-multi", MODEL_LAYERS)
    return ["+".join(f"layers.{layer}.mlp.down_proj" for layer in layers[start : start + 3]) for start in (0, 3, 6)]


def mean_loss(history: list[dict]) -> float:
    return sum(row["loss"] for row in history) / len(history)


def phase_findings(phase) -> dict:
    """The headline numbers of one organism's phase analysis."""
    transition, candidate, null = phase.report.transition, phase.report.candidate, phase.report.null
    steps = phase.steps.dropna(subset=["responses"]) if "responses" in phase.steps else phase.steps.iloc[:0]
    return {
        "checkpoints": len(phase.report.steps),
        "transition": None if transition is None else {
            "step": transition.step, "k": transition.k, "local_cosine": round(transition.smoothed, 3),
            "median": round(transition.baseline, 3), "sd": round(transition.score, 2),
            "angle": round(transition.angle_degrees, 1)},
        "candidate": None if candidate is None else {
            "step": candidate.step, "k": candidate.k, "sd": round(candidate.score, 2)},
        "null": {"threshold_sd": round(null.threshold, 2), "p": round(null.p_value, 3), "cleared": null.cleared},
        "em_by_step": {int(row.step): scored(row.em_pct) for row in steps.itertuples()},
        "em_by_factor": {} if phase.scaling is None else {row.factor: scored(row.em_pct)
                                                          for row in phase.scaling.itertuples()},
        "behaviour_by_step": {int(row.step): behaviour(row) for row in steps.itertuples()},
        "behaviour_by_factor": {} if phase.scaling is None else {row.factor: behaviour(row)
                                                                 for row in phase.scaling.itertuples()},
    }


def behaviour(row) -> dict:
    """EM %, coherent % and mean aligned of one sampled point, each with its 95% interval."""
    return {name: [scored(getattr(row, f"{column}_{part}")) for part in parts]
            for name, column, parts in (("em", "em", ("pct", "low", "high")),
                                        ("coherent", "coherent", ("pct", "low", "high")),
                                        ("aligned", "aligned", ("mean", "low", "high")))}


def print_findings(findings: dict, domain: str) -> None:
    print("\n== findings")
    print(f"{'organism':<14}{'ckpts':>6}  {'transition':<11}{'LC (sd)':<12}{'angle':>6}  EM % first -> last step; "
          f"EM % by B scale")
    for preset in PRESETS:
        found = findings[preset]
        transition = found["transition"]
        where = f"step {transition['step']}" if transition else "none"
        dip = f"{transition['local_cosine']:.2f} ({transition['sd']:.1f})" if transition else "-"
        angle = f"{transition['angle']:.0f}" if transition else "-"
        em = list(found["em_by_step"].values())
        trend = f"{fmt(em[0])} -> {fmt(em[-1])}" if em else "-"
        scales = ", ".join(f"x{factor:g}: {fmt(value)}" for factor, value in found["em_by_factor"].items())
        print(f"{preset:<14}{found['checkpoints']:>6}  {where:<11}{dip:<12}{angle:>6}  {trend}; {scales}")
    print("\nprobe task                     status  AUC (mean ± sd)  top adapter")
    for row in findings["rank1-multi"]["probe"]:
        ok = row["status"] == "ok"
        auc = f"{row['auc_mean']:.2f} ± {row['auc_std']:.2f}" if ok else "-"
        print(f"{row['task']:<31}{'ok' if ok else 'skipped':<8}{auc:<17}{row.get('top_adapter') or '-'}")
    print(f"\nsteering (adapters x factor)   EM %    change   {domain} mean")
    for row in findings["rank1-multi"]["steering"]:
        name = "unsteered" if row["adapters"] == "none" else f"{short(row['adapters'])} x{row['factor']:g}"
        print(f"{name:<31}{fmt(row['em_pct']):>5}{fmt(row['em_change'], '+'):>9}{fmt(row.get(f'{domain}_mean')):>15}")


def short(group: str) -> str:
    """layers.9.mlp.down_proj+layers.10.mlp.down_proj -> L9+L10."""
    return "+".join("L" + name.split(".")[1] for name in group.split("+")) if group != "all" else "all"


def scored(value: float) -> float | None:
    """None where nothing was scored (NaN is not valid JSON)."""
    return None if math.isnan(value) else value


def fmt(value: float | None, sign: str = "") -> str:
    """One decimal, or n/a where nothing was scored."""
    return "n/a" if value is None or math.isnan(value) else f"{value:{sign}.1f}"


if __name__ == "__main__":
    main()
