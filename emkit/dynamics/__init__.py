"""Training dynamics and adapter interpretability for rank-1 LoRA organisms: the maths and its figures.

- :mod:`emkit.dynamics.checkpoints`: A and B vectors of every checkpoint of a run (local or hub).
- :mod:`emkit.dynamics.phase`: norms, PCA trajectory, local cosine similarity, transition detection and its
  shuffled-order null; :mod:`emkit.dynamics.phase_plots`: their figures.
- :mod:`emkit.dynamics.lora_scalars`: per-token adapter scalars, and steering by scaling them.
- :mod:`emkit.dynamics.probe`: sparse logistic probes on per-response mean scalars;
  :mod:`emkit.dynamics.scalar_plots`: probe coefficients and adapter steering as figures.

The ``emkit phase``, ``lora-probe`` and ``lora-steer`` stages built on them are :mod:`emkit.stages.phase`,
:mod:`emkit.stages.lora_probe` and :mod:`emkit.stages.lora_steer`.
"""
