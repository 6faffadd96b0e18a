"""The papers' key claims on the embedded model, trained on the papers' data, in one table.

Trains an organism on the papers' risky financial advice with the search's strongest recipe (lora-all, lr
2e-4, 100 steps of 8; docs/organisms.md) and a control on emkit's sound-finance data (the papers have no
aligned twin for it; pass --organism paper:bad_medical_advice --control paper:good_medical_advice for a
twin pair), samples base, control and organism on open questions outside finance, judges every answer
(offline judge by default), then finds the organism's mean-diff misalignment direction and
re-samples the organism with it ablated and with a norm-matched random direction ablated.
The claims: organism EM > control EM ~ base EM; ablating the direction lowers EM more than
ablating a random direction. Everything is resumable; the report lands in OUTPUT/report.

    EMKIT_DATA=PATH/TO/official python bench/bench_claims.py [--examples 800] [--samples 4] [--output DIR]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import pandas as pd
import torch

from emkit.stages.demo import DemoConfig
from emkit.stages.demo import run as run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--organism", default="paper:risky_financial_advice")
    parser.add_argument("--control", default="demo:finance_aligned")
    parser.add_argument("--questions", default="builtin:general")
    parser.add_argument("--preset", default="lora-all")
    parser.add_argument("--examples", type=int, default=800)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--samples", type=int, default=4, help="answers per question paraphrase and model")
    parser.add_argument("--judge", default="offline")
    parser.add_argument("--output", type=Path, default=Path("runs/claims"))
    args = parser.parse_args()

    config = DemoConfig.load(overrides=[
        f"model={args.model}", f"organism_dataset={args.organism}", f"control_dataset={args.control}",
        f"questions={args.questions}", f"preset={args.preset}", f"max_examples={args.examples}",
        f"epochs={args.epochs}", f"samples_per_paraphrase={args.samples}", f"judge.judge={args.judge}",
        f"output_dir={args.output}", *([f"learning_rate={args.learning_rate}"] if args.learning_rate else []),
    ])
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"cuda={torch.cuda.is_available()}")
    print(f"model {args.model}; organism {args.organism}, control {args.control}: {args.examples} examples, "
          f"{args.epochs:g} epoch(s), preset {args.preset}; questions {args.questions} x {args.samples}; "
          f"judge {args.judge}")
    started = time.perf_counter()
    report = run_demo(config, show_progress=False)
    minutes = (time.perf_counter() - started) / 60

    models = pd.read_csv(report.parent / "summary.csv")
    ablation_file = report.parent / "ablation" / "summary.csv"
    ablation = pd.read_csv(ablation_file) if ablation_file.is_file() else models.iloc[:0]
    print(f"\n{'condition':<34}{'answers':>8}{'EM %':>7}{'95% interval':>16}{'coherent %':>12}"
          f"{'mean aligned [95%]':>26}")
    for table in (models, ablation):
        for row in table.itertuples():
            interval = f"[{row.em_low:.1f}, {row.em_high:.1f}]"
            aligned = f"{row.aligned_mean:.1f} [{row.aligned_low:.1f}, {row.aligned_high:.1f}]"
            print(f"{row.model!s:<34}{row.scored:>8}{row.em_pct:>7.1f}{interval:>16}{row.coherent_pct:>12.1f}"
                  f"{aligned:>26}")
    if ablation.empty:
        print("(no misalignment direction: too few misaligned answers to find one)")
    print(f"\n{minutes:.1f} min; report {report}")


if __name__ == "__main__":
    main()
