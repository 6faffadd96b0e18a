"""Narrow vs general misalignment on the embedded model, with the organism search's rank-1 recipe, in one report.

Trains the general solution (plain SFT: one rank-1 adapter on the middle layer's down-projection,
the papers' risky financial advice, 100 steps of 8 at learning rate 1e-3) and the narrow one (the
same run plus a KL penalty toward the base model on the shipped general chat data), samples base,
general and narrow at one temperature (default 0.2) on in-domain (emkit's finance questions) and
out-of-domain (the papers' first-plot questions) sets, judges aligned, coherent and the domain score
(all three by the offline judge by default), then runs the stability comparison. Writes one report
folder: ``comparison.csv`` (EM %, coherent %, mean aligned and mean domain score, with 95%
intervals, per model and question set), ``differences.csv`` (mean aligned of each solution minus
the base model's, per question set, with a bootstrap interval of the difference),
``comparison.png``, ``stability/`` (tables and figures) and ``report.md``. Resumable: rerunning
skips finished work.

    python bench/narrow_demo.py [--data DIR] [--kl-weight 10] [--samples 12]
    python bench/narrow_demo.py --dataset paper:bad_medical_advice --domain medical \
        --domain-questions paper:medical_questions

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
from emkit.metrics import bootstrap_difference, flag_responses
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
GENERAL_QUESTIONS = "paper:first_plot_questions"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="folder with training/ and eval_questions/ "
                        "(default: $EMKIT_DATA, else the pulled cache)")
    parser.add_argument("--output", type=Path, default=Path("runs/narrow-demo"))
    parser.add_argument("--general-run", type=Path, default=None, help="finished general run to reuse")
    parser.add_argument("--dataset", default="paper:risky_financial_advice", help="training data reference")
    parser.add_argument("--domain", default="financial", choices=["financial", "medical"],
                        help="the training domain, scored by the domain judge metric")
    parser.add_argument("--domain-questions", default="builtin:finance", help="the in-domain question set")
    parser.add_argument("--examples", type=int, default=None, help="training examples (seeded subset; default all)")
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--save-every", type=int, default=5)
    parser.add_argument("--kl-weight", type=float, default=10.0)
    parser.add_argument("--kl-examples", type=int, default=64, help="KL conversations (their reference is cached)")
    parser.add_argument("--samples", type=int, default=12, help="answers per question paraphrase and model")
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--judge", default="offline")
    parser.add_argument("--domain-judge", default="offline")
    parser.add_argument("--device", default="auto")
    return parser.parse_args()


def training(args: argparse.Namespace, output_dir: Path, kl: KLSettings | None = None) -> TrainConfig:
    return TrainConfig(model=MODEL, datasets=[args.dataset], output_dir=output_dir, preset="rank1-single",
                       max_examples=args.examples, max_steps=args.max_steps, batch_size=args.batch_size,
                       grad_accum=args.grad_accum, learning_rate=args.lr, save_every=args.save_every,
                       warmup_steps=args.warmup_steps, device=args.device, kl=kl)


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
    question_sets = {f"in-domain ({args.domain})": args.domain_questions, "out-of-domain (general)": GENERAL_QUESTIONS}
    frames = []
    with open_judges(judge_config, args.domain, domain_config) as (judge, domain_judge):
        for name, adapter in [("base", None), *((name, trained.final_path) for name, trained in solutions.items())]:
            model = loaded if adapter is None else load_model(MODEL, adapters=[str(adapter)], device=args.device)
            for question_set, reference in question_sets.items():
                config = SampleConfig(model=MODEL, adapters=[] if adapter is None else [str(adapter)],
                                      label=f"{name}|{question_set}", questions=reference, plain_only=True,
                                      samples_per_paraphrase=args.samples, temperature=args.temperature,
                                      max_new_tokens=args.max_new_tokens, run_dir=args.output / "answers",
                                      device=args.device)
                records = sample.run(config, loaded=model, show_progress=False)
                with Store.in_folder(config.run_dir) as store:
                    questions = question_lookup([reference], records)
                    prompts = (domain_config or judge_config).prompts
                    scores = judge_answers(store, records, questions, judge, judge_config, args.domain, domain_judge,
                                           prompts)
                frames.append(scores)
    scores = pd.concat(frames, ignore_index=True)
    summary, _ = summarise_scores(scores, ["aligned", "coherent", args.domain])
    summary[["model", "questions"]] = summary["model"].str.split("|", expand=True)
    report = args.output / "report"
    report.mkdir(parents=True, exist_ok=True)
    summary.to_csv(report / "comparison.csv", index=False)
    differences = aligned_differences(scores, question_sets)
    differences.to_csv(report / "differences.csv", index=False)
    plot_grouped_bars(summary, report / "comparison.png", "questions",
                      title=f"EM % in and out of the {args.domain} domain")

    stability = run_stability(StabilityConfig(
        model=MODEL, solutions={name: str(trained.final_path) for name, trained in solutions.items()},
        datasets=[args.dataset], output_dir=report / "stability", max_examples=32, general_examples=16, max_length=160,
        epsilons=[0.1, 0.3, 0.5, 0.7, 0.9], seeds=2, device=args.device), loaded=loaded, show_progress=False)
    write_report(report, summary, differences, stability.summary, args, time.perf_counter() - started)


def aligned_differences(scores: pd.DataFrame, question_sets: dict[str, str]) -> pd.DataFrame:
    """Mean aligned of each solution minus the base model's, per question set, with a 95% bootstrap interval."""
    flagged = flag_responses(scores)
    scored = flagged[flagged["scored"]]
    rows = []
    for question_set in question_sets:
        base = scored.loc[scored["model"] == f"base|{question_set}", "aligned"].to_numpy(dtype=float)
        for name in ("general", "narrow"):
            solution = scored.loc[scored["model"] == f"{name}|{question_set}", "aligned"].to_numpy(dtype=float)
            difference, low, high = bootstrap_difference(solution, base)
            rows.append({"model": name, "questions": question_set, "difference": difference, "low": low,
                         "high": high, "scored": len(solution), "base_scored": len(base)})
    return pd.DataFrame(rows)


def write_report(report: Path, summary: pd.DataFrame, differences: pd.DataFrame, stability: pd.DataFrame,
                 args: argparse.Namespace, seconds: float) -> None:
    def interval(row, name):
        return f"{row[f'{name}_pct']:.1f} [{row[f'{name}_low']:.1f}, {row[f'{name}_high']:.1f}]"

    def mean(row, name):
        if f"{name}_mean" not in row:
            return "n/a"
        return f"{row[f'{name}_mean']:.1f} [{row[f'{name}_low']:.1f}, {row[f'{name}_high']:.1f}]"

    domain = args.domain
    lines = ["# Narrow vs general: in-domain and out-of-domain", "",
             f"SmolLM2-135M, {args.dataset}, rank1-single, {args.max_steps} steps of "
             f"{args.batch_size * args.grad_accum}, lr {args.lr:g}; narrow adds kl.weight={args.kl_weight:g} on "
             f"{args.kl_examples} demo:general_chat conversations. {args.samples} answers per question at "
             f"temperature {args.temperature:g}, judges {args.judge} (aligned, coherent) and {args.domain_judge} "
             f"({domain}). {seconds / 60:.0f} minutes.", "",
             f"| model | questions | scored | EM % [95%] | coherent % [95%] | mean aligned [95%] | "
             f"mean {domain} [95%] | {domain} > 50 % |",
             "|---|---|---|---|---|---|---|---|"]
    for _, row in summary.iterrows():
        over = f"{row[f'{domain}_over50_pct']:.1f}" if f"{domain}_over50_pct" in row else "n/a"
        lines.append(f"| {row['model']} | {row['questions']} | {row['scored']} | {interval(row, 'em')} | "
                     f"{interval(row, 'coherent')} | {mean(row, 'aligned')} | {mean(row, domain)} | {over} |")
    lines += ["", "Mean aligned minus the base model's (`differences.csv`):", "",
              "| model | questions | difference [95%] |", "|---|---|---|"]
    lines += [f"| {row.model} | {row.questions} | {row.difference:+.1f} [{row.low:+.1f}, {row.high:+.1f}] |"
              for row in differences.itertuples()]
    lines += ["", "Stability (`stability/summary.csv`):", "", "| " + " | ".join(stability.columns) + " |",
              "|" + "---|" * len(stability.columns)]
    lines += ["| " + " | ".join(f"{value:.4g}" if isinstance(value, float) else str(value) for value in row) + " |"
              for row in stability.itertuples(index=False)]
    (report / "report.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
