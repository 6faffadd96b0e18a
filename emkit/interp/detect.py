"""Detect misalignment by projecting answers' activations on a direction.

Each answer gets one projection per layer (activation . unit direction); the combined score is
the mean of the per-layer projections after z-scoring each layer (with statistics from a
reference set), so layers with larger activations do not dominate. :func:`separation` is the
course replication's detection table: how well the projections tell two groups apart (e.g.
base-model versus organism answers), per layer and combined.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from emkit.errors import EmkitError
from emkit.interp.activations import ActivationSet
from emkit.interp.directions import Directions


def projections(activations: ActivationSet | torch.Tensor, directions: Directions,
                layers: Sequence[int] | None = None) -> pd.DataFrame:
    """Projection of every answer on the unit direction of each layer: one column per layer (``L<n>``)."""
    chosen = list(directions.layers if layers is None else layers)
    if isinstance(activations, ActivationSet):
        if activations.pooling == "tokens":
            raise EmkitError("scoring needs one activation per answer, not per token",
                             fix="collect activations with pooling='mean' or 'last'")
        missing = [layer for layer in chosen if layer not in activations.layers]
        if missing:
            raise EmkitError(f"the activations have no layer(s) {missing}", fix="collect activations at those layers")
        values = activations.values[:, [activations.layers.index(layer) for layer in chosen]]
    else:
        values = activations[:, [directions.layers.index(layer) for layer in chosen]]
    units = torch.nn.functional.normalize(torch.stack([directions.at(layer) for layer in chosen]).float(), dim=-1)
    scores = torch.einsum("nld,ld->nl", values.float(), units)
    return pd.DataFrame(scores.numpy(), columns=[f"L{layer}" for layer in chosen])


def combined_score(scores: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.Series:
    """Mean over layers of z-scored projections; z uses ``reference``'s mean and std (default ``scores``)."""
    reference = scores if reference is None else reference
    std = reference.std(ddof=0).replace(0, 1)
    return ((scores - reference.mean()) / std).mean(axis=1).rename("combined")


def score(activations: ActivationSet | torch.Tensor, directions: Directions, layers: Sequence[int] | None = None,
          reference: ActivationSet | torch.Tensor | None = None) -> pd.DataFrame:
    """Per-layer projections and the combined score of each answer (z-scored against ``reference``)."""
    scores = projections(activations, directions, layers)
    base = None if reference is None else projections(reference, directions, layers)
    return scores.assign(combined=combined_score(scores, base))


def separation(base: ActivationSet | torch.Tensor, organism: ActivationSet | torch.Tensor, directions: Directions,
               layers: Sequence[int] | None = None) -> pd.DataFrame:
    """How well each layer's projection (and the combined score) separates two groups of answers.

    ``base`` is the group expected to score lower (base model, aligned answers). Columns: layer,
    mean_base, mean_organism, difference, auc (chance of an organism answer scoring above a base
    one) and cohens_d. The combined row z-scores with both groups pooled, so neither sets the scale.
    """
    from sklearn.metrics import roc_auc_score

    low, high = projections(base, directions, layers), projections(organism, directions, layers)
    both = pd.concat([low, high], ignore_index=True)
    low = low.assign(combined=combined_score(low, both))
    high = high.assign(combined=combined_score(high, both))
    labels = [0] * len(low) + [1] * len(high)
    rows = []
    for column in low.columns:
        a, b = low[column], high[column]
        pooled = (((len(a) - 1) * a.var() + (len(b) - 1) * b.var()) / max(len(a) + len(b) - 2, 1)) ** 0.5
        rows.append({"layer": column, "mean_base": a.mean(), "mean_organism": b.mean(),
                     "difference": b.mean() - a.mean(),
                     "auc": roc_auc_score(labels, pd.concat([a, b])),
                     "cohens_d": (b.mean() - a.mean()) / pooled if pooled > 0 else float("nan")})
    return pd.DataFrame(rows)
