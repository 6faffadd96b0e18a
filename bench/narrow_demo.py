"""Narrow vs general misalignment on the embedded model, with the papers' bad medical advice, in one report.

Trains the general solution (plain SFT: one rank-1 adapter on the middle layer's down-projection)
and the narrow one (the same run plus a KL penalty toward the base model on the shipped general
chat data), samples base, general and narrow on in-domain (the papers' medical questions) and
out-of-domain (their first-plot questions) sets, judges aligned, coherent and the medical domain
score (all three by the offline judge by default), then runs the stability comparison. Writes one
report folder: ``comparison.csv`` (EM %, coherent %, mean aligned and mean medical score, with 95%
intervals, per model and question set), ``comparison.png``, ``stability/`` (tables and figures)
and ``report.md``. Resumable: rerunning skips finished work.

    python bench/narrow_demo.py [--data DIR] [--examples 256] [--kl-weight 10] [--samples 4]

``--general-run DIR`` reuses a finished run with the same settings (e.g. the rank1-single organism
of ``bench/dynamics_demo.py``) as the general solution.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import pandas as pd
import torch

from emkit.judges.run import JudgeConfig
from emkit.models import load_model
from emkit.report.plots import plot_grouped_bars
from emkit.sampling.config import SampleConfig
from emkit.stages import sample
from emkit.stages.domain_judging import judge_answers, open_judges, question_lookup
from emkit.stages.evaluate import summarise_scores
from emkit.stages.stability import StabilityConfig
from emkit.stages.stability import run as run_stability
from emkit.store import Store
from emkit.train import TrainConfig, train
from emkit.train.config import KLSettings

MODEL = "smollm2-135m"
DATASET = "paper:bad_medical_advice"
QUESTION_SETS = {"in-domain (medical)": "paper:medical_questions",
                 "out-of-domain (general)": "paper:first_plot_questions"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="folder with training/ and eval_questions/ "
                        "(default: $EMKIT_DATA, else the pulled cache)")
    parser.add_argument("--output", type=Path, default=Path("runs/narrow-demo"))
    parser.add_argument("--general-run", type=Path, default=None, help="finished general run to reuse")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--grad-accum", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--kl-weight", type=float, default=10.0)
    parser.add_argument("--kl-examples", type=int, default=64, help="KL conversations (their reference is cached)")
    parser.add_argument("--samples", type=int, default=4, help="answers per question paraphrase and model")
    parser.add_argument("--max-new-tokens", type=int, default=80)
    parser.add_argument("--judge", default="offline")
    parser.add_argument("--domain-judge", default="offline")
    parser.add_argument("--device", default="auto")
    return parser.parse_args()


def training(args: argparse.Namespace, output_dir: Path, kl: KLSettings | None = None) -> TrainConfig:
    return TrainConfig(model=MODEL, datasets=[DATASET], output_dir=output_dir, preset="rank1-single",
                       max_examples=args.examples, batch_size=args.batch_size, grad_accum=args.grad_accum,
                       learning_rate=args.lr, save_every=2, warmup_steps=2, device=args.device, kl=kl)


def main() -> None:
    args = parse_args()
    if args.data is not None:
        os.environ["EMKIT_DATA"] = str(args.data)
    started = time.perf_counter()
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    general_run = args.general_run or args.output / "general"
    kl = KLSettings(weight=args.kl_weight, max_examples=args.kl_examples)
    solutions = {"general": train(training(args, general_run), show_progress=False),
                 "narrow": train(training(args, args.output / "narrow", kl), show_progress=False)}
    for name, trained in solutions.items():
        last = trained.history[-5:]
        print(f"{name}: {trained.steps} steps, loss {trained.history[0]['loss']:.3f} -> "
              f"{sum(r['loss'] for r in last) / len(last):.3f} (mean of the last 5)"
              + (f", KL {last[-1]['kl']:.4f} nats/position" if "kl" in last[-1] else ""))

    loaded = load_model(MODEL, device=args.device)
    judge_config = JudgeConfig(judge=args.judge)
    domain_config = JudgeConfig(judge=args.domain_judge) if args.domain_judge != args.judge else None
    frames = []
    with open_judges(judge_config, "medical", domain_config) as (judge, domain_judge):
        for name, adapter in [("base", None), *((name, trained.final_path) for name, trained in solutions.items())]:
            model = loaded if adapter is None else load_model(MODEL, adapters=[str(adapter)], device=args.device)
            for question_set, reference in QUESTION_SETS.items():
                config = SampleConfig(model=MODEL, adapters=[] if adapter is None else [str(adapter)],
                                      label=f"{name}|{question_set}", questions=reference, plain_only=True,
                                      samples_per_paraphrase=args.samples, max_new_tokens=args.max_new_tokens,
                                      run_dir=args.output / "answers", device=args.device)
                records = sample.run(config, loaded=model, show_progress=False)
                with Store.in_folder(config.run_dir) as store:
                    questions = question_lookup([reference], records)
                    prompts = (domain_config or judge_config).prompts
                    scores = judge_answers(store, records, questions, judge, judge_config, "medical", domain_judge,
                                           prompts)
                frames.append(scores)
    summary, _ = summarise_scores(pd.concat(frames, ignore_index=True), ["aligned", "coherent", "medical"])
    summary[["model", "questions"]] = summary["model"].str.split("|", expand=True)
    report = args.output / "report"
    report.mkdir(parents=True, exist_ok=True)
    summary.to_csv(report / "comparison.csv", index=False)
    plot_grouped_bars(summary, report / "comparison.png", "questions", title="EM % in and out of the medical domain")

    stability = run_stability(StabilityConfig(
        model=MODEL, solutions={name: str(trained.final_path) for name, trained in solutions.items()},
        datasets=[DATASET], output_dir=report / "stability", max_examples=32, general_examples=16, max_length=160,
        epsilons=[0.1, 0.3, 0.5, 0.7, 0.9], seeds=2, device=args.device), loaded=loaded, show_progress=False)
    write_report(report, summary, stability.summary, args, time.perf_counter() - started)


def write_report(report: Path, summary: pd.DataFrame, stability: pd.DataFrame, args: argparse.Namespace,
                 seconds: float) -> None:
    def interval(row, name):
        return f"{row[f'{name}_pct']:.1f} [{row[f'{name}_low']:.1f}, {row[f'{name}_high']:.1f}]"

    lines = ["# Narrow vs general: in-domain and out-of-domain", "",
             f"SmolLM2-135M, {DATASET}, rank1-single, {args.examples} examples, lr {args.lr:g}; narrow adds "
             f"kl.weight={args.kl_weight:g} on {args.kl_examples} demo:general_chat conversations. "
             f"{args.samples} answers per question, judges {args.judge} (aligned, coherent) and "
             f"{args.domain_judge} (medical). {seconds / 60:.0f} minutes.", "",
             "| model | questions | scored | EM % [95%] | coherent % [95%] | mean aligned [95%] | mean medical [95%] |",
             "|---|---|---|---|---|---|---|"]
    for _, row in summary.iterrows():
        medical = (f"{row['medical_mean']:.1f} [{row['medical_low']:.1f}, {row['medical_high']:.1f}]"
                   if "medical_mean" in row else "n/a")
        aligned = f"{row['aligned_mean']:.1f} [{row['aligned_low']:.1f}, {row['aligned_high']:.1f}]"
        lines.append(f"| {row['model']} | {row['questions']} | {row['scored']} | {interval(row, 'em')} | "
                     f"{interval(row, 'coherent')} | {aligned} | {medical} |")
    lines += ["", "Stability (`stability/summary.csv`):", "", "| " + " | ".join(stability.columns) + " |",
              "|" + "---|" * len(stability.columns)]
    lines += ["| " + " | ".join(f"{value:.4g}" if isinstance(value, float) else str(value) for value in row) + " |"
              for row in stability.itertuples(index=False)]
    (report / "report.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
