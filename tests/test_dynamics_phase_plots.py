import math

import pandas as pd
import torch
from dynamics_runs import planted_run

from emkit.dynamics.checkpoints import read_checkpoints
from emkit.dynamics.phase import phase_report
from emkit.dynamics.phase_plots import plot_mechanism_vs_behaviour, plot_phase, plot_scaling
from emkit.stages.phase import PhaseConfig


def test_the_four_mechanistic_figures_are_written_by_name(tmp_path):
    run, _ = planted_run(tmp_path / "run", count=12, turn_index=6)
    report = phase_report(read_checkpoints(run), PhaseConfig(run=str(run), ks=[1], null_permutations=10))
    files = plot_phase(report, tmp_path / "figures")
    assert list(files) == ["norms", "pca", "local_cosine", "similarity_to_final"]
    for name, path in files.items():
        assert path == tmp_path / "figures" / f"{name}.png" and path.stat().st_size > 0


def test_mechanism_and_behaviour_share_an_axis(tmp_path):
    steps = [0, 10, 20, 30]
    path = plot_mechanism_vs_behaviour(steps, torch.tensor([math.nan, 0.9, -0.1, 0.8]),
                                       {0: 0.0, 10: (1.0, 0.0, 3.0), 30: (12.0, 8.0, 16.0)}, tmp_path / "mb.png")
    assert path.stat().st_size > 0


def test_scaling_plot_takes_the_scaling_table(tmp_path):
    table = pd.DataFrame({"factor": [0.0, 1.0, 2.0], "em_pct": [0.0, 5.0, 20.0], "em_low": [0.0, 2.0, 15.0],
                          "em_high": [1.0, 8.0, 25.0], "coherent_pct": [90.0, 85.0, 60.0],
                          "coherent_low": [85.0, 80.0, 55.0], "coherent_high": [95.0, 90.0, 65.0]})
    assert plot_scaling(table, tmp_path / "nested" / "scaling.png").stat().st_size > 0
