import numpy as np
import pandas as pd

from emkit.dynamics.probe import ProbeResult
from emkit.dynamics.scalar_plots import plot_adapter_steering, plot_probe_coefficients


def test_probe_coefficients_are_drawn_one_violin_per_adapter(tmp_path):
    rng = np.random.default_rng(0)
    result = ProbeResult(metrics=pd.DataFrame({"auc": rng.uniform(0.6, 0.9, 5)}),
                         coefficients=pd.DataFrame(rng.normal(size=(5, 3)), columns=["a", "b", "c"]), per_class=20)
    assert plot_probe_coefficients(result, str(tmp_path / "nested" / "violin.png")).stat().st_size > 0


def test_adapter_steering_bars_take_the_steering_table_with_or_without_a_domain(tmp_path):
    table = pd.DataFrame({"adapters": ["none", "all", "all", "layers.3"], "factor": [1.0, 0.0, -1.0, 0.0],
                          "em_pct": [10.0, 0.0, 2.0, 8.0], "em_low": [5.0, 0.0, 0.0, 4.0],
                          "em_high": [15.0, 1.0, 5.0, 12.0], "medical_mean": [40.0, 5.0, 3.0, 30.0],
                          "medical_low": [35.0, 2.0, 1.0, 25.0], "medical_high": [45.0, 8.0, 6.0, 35.0]})
    assert plot_adapter_steering(table, tmp_path / "steering.png", "medical").stat().st_size > 0
    assert plot_adapter_steering(table, tmp_path / "em-only.png").stat().st_size > 0
