"""Training dynamics and adapter interpretability for rank-1 LoRA organisms.

- :mod:`emkit.dynamics.checkpoints`: A and B vectors of every checkpoint of a run (local or hub).
- :mod:`emkit.dynamics.phase`: norms, PCA trajectory, local cosine similarity, transition detection,
  plots, and sampling per checkpoint or under B-vector scaling.
- :mod:`emkit.dynamics.lora_scalars`: per-token adapter scalars, and steering by scaling them.
- :mod:`emkit.dynamics.probe`: sparse logistic probes on per-response mean scalars.
- :mod:`emkit.dynamics.stages`: the ``emkit phase``, ``lora-probe`` and ``lora-steer`` stages built on them.
"""

from emkit.dynamics.checkpoints import CheckpointVectors, local_checkpoints, module_name, read_checkpoints
from emkit.dynamics.lora_scalars import (
    adapter_scalars,
    capture_scalars,
    export_scalars,
    lora_a_modules,
    scale_adapters,
)
from emkit.dynamics.phase import (
    PhaseBehaviour,
    PhaseConfig,
    PhaseReport,
    Transition,
    analyse_phase,
    detect_transition,
    local_cosine,
    norms,
    pca_trajectory,
    plot_local_cosine,
    plot_mechanism_vs_behaviour,
    plot_norms,
    plot_pca_trajectory,
    plot_similarity_to_final,
    sample_checkpoints,
    sample_scaled,
    similarity_to_final,
    write_scaled_adapter,
)
from emkit.dynamics.probe import (
    ProbeResult,
    plot_probe_coefficients,
    probe,
    probe_tasks,
    response_features,
    run_probe_tasks,
)
from emkit.dynamics.stages import (
    LoraProbeConfig,
    LoraProbeResult,
    LoraSteerConfig,
    LoraSteerResult,
    PhaseResult,
    lora_probe,
    lora_steer,
    run_phase,
)

__all__ = [
    "CheckpointVectors",
    "LoraProbeConfig",
    "LoraProbeResult",
    "LoraSteerConfig",
    "LoraSteerResult",
    "PhaseBehaviour",
    "PhaseConfig",
    "PhaseReport",
    "PhaseResult",
    "ProbeResult",
    "Transition",
    "adapter_scalars",
    "analyse_phase",
    "capture_scalars",
    "detect_transition",
    "export_scalars",
    "local_checkpoints",
    "local_cosine",
    "lora_a_modules",
    "lora_probe",
    "lora_steer",
    "module_name",
    "norms",
    "pca_trajectory",
    "plot_local_cosine",
    "plot_mechanism_vs_behaviour",
    "plot_norms",
    "plot_pca_trajectory",
    "plot_probe_coefficients",
    "plot_similarity_to_final",
    "probe",
    "probe_tasks",
    "read_checkpoints",
    "response_features",
    "run_phase",
    "run_probe_tasks",
    "sample_checkpoints",
    "sample_scaled",
    "scale_adapters",
    "similarity_to_final",
    "write_scaled_adapter",
]
