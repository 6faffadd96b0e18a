"""Misalignment directions per layer: difference in means, logistic-regression probes, and their cosines.

A direction points from aligned towards misaligned activations. The difference in means
(misaligned minus aligned, the papers' method) keeps its length, which says how far apart the
groups are; probe directions are unit vectors, with held-out accuracy and AUC per layer saying
how linearly separable the groups are there. Cosine matrices compare directions across layers,
or across two models or fine-tunes (the papers' convergence result).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from emkit.errors import EmkitError
from emkit.interp.activations import ActivationSet
from emkit.interp.files import load_with_header, save_with_header


@dataclass
class Directions:
    """One direction per layer: ``vectors`` [layers, d] float32, ``layers`` the decoder-layer indices."""

    vectors: torch.Tensor
    layers: list[int]
    method: str
    model: str = ""
    data: str = ""
    metrics: dict[str, list[float]] = field(default_factory=dict)

    def at(self, layer: int) -> torch.Tensor:
        """The direction measured at decoder layer ``layer``."""
        if layer not in self.layers:
            raise EmkitError(f"no direction for layer {layer}", fix=f"use one of layers {self.layers}")
        return self.vectors[self.layers.index(layer)]

    def as_mapping(self, layers: Sequence[int] | None = None) -> dict[int, torch.Tensor]:
        """{layer: vector} for the chosen layers (default all), the form the hooks take."""
        return {layer: self.at(layer) for layer in (self.layers if layers is None else layers)}

    def save(self, path: str | Path) -> Path:
        """Write as safetensors with the record's fields as JSON metadata."""
        header = {"layers": self.layers, "method": self.method, "model": self.model, "data": self.data,
                  "metrics": self.metrics}
        return save_with_header(path, {"vectors": self.vectors.float()}, "emkit_directions", header)

    @classmethod
    def load(cls, path: str | Path) -> Directions:
        """Read directions written by :meth:`save`."""
        tensors, header = load_with_header(path, "emkit_directions", "directions", "Directions.save")
        return cls(tensors["vectors"], header["layers"], header["method"], header["model"], header["data"],
                   header["metrics"])


def _values(activations: ActivationSet | torch.Tensor) -> tuple[torch.Tensor, list[int] | None, str]:
    if isinstance(activations, ActivationSet):
        if activations.pooling == "tokens":
            raise EmkitError("directions need one activation per answer, not per token",
                             fix="collect activations with pooling='mean' or 'last'")
        return activations.values.float(), activations.layers, activations.model
    if activations.dim() != 3:
        raise EmkitError(f"activations must be [n, layers, d]; got shape {tuple(activations.shape)}",
                         fix="pass pooled activations")
    return activations.float(), None, ""


def _pair(misaligned: ActivationSet | torch.Tensor,
          aligned: ActivationSet | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[int], str]:
    bad, bad_layers, model = _values(misaligned)
    good, good_layers, _ = _values(aligned)
    if bad.shape[1:] != good.shape[1:] or bad_layers != good_layers:
        raise EmkitError(f"the two activation sets do not match: {tuple(bad.shape[1:])} vs {tuple(good.shape[1:])}",
                         fix="collect both with the same model and layers")
    return bad, good, bad_layers or list(range(bad.shape[1])), model


def mean_difference(misaligned: ActivationSet | torch.Tensor, aligned: ActivationSet | torch.Tensor,
                    data: str = "") -> Directions:
    """Per-layer mean of misaligned minus mean of aligned activations (unnormalised; its norm is a metric)."""
    bad, good, layers, model = _pair(misaligned, aligned)
    vectors = bad.mean(dim=0) - good.mean(dim=0)
    return Directions(vectors, layers, "mean-diff", model, data, {"norm": vectors.norm(dim=-1).tolist()})


def probe_directions(misaligned: ActivationSet | torch.Tensor, aligned: ActivationSet | torch.Tensor,
                     data: str = "", test_fraction: float = 0.25, seed: int = 0,
                     regularization: float = 1.0) -> Directions:
    """Per-layer logistic-regression probes (standardised features), as unit directions in activation space.

    Each probe is fit on a stratified training split; ``accuracy`` and ``auc`` are measured on the
    held-out rest, so they say how well the direction generalises rather than how well it memorises.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    bad, good, layers, model = _pair(misaligned, aligned)
    if min(len(bad), len(good)) < 4:
        raise EmkitError(f"a probe needs at least 4 answers per group (got {len(bad)} and {len(good)})",
                         fix="select more answers")
    features = torch.cat([bad, good]).numpy()
    labels = [1] * len(bad) + [0] * len(good)
    train, test = train_test_split(range(len(labels)), test_size=test_fraction, random_state=seed, stratify=labels)
    y_train, y_test = [labels[i] for i in train], [labels[i] for i in test]
    vectors, metrics = [], {"accuracy": [], "auc": [], "train_accuracy": []}
    for position in range(len(layers)):
        x = features[:, position]
        scaler = StandardScaler().fit(x[train])
        probe = LogisticRegression(C=regularization, max_iter=2000).fit(scaler.transform(x[train]), y_train)
        scores = probe.decision_function(scaler.transform(x[test]))
        metrics["accuracy"].append(float(accuracy_score(y_test, scores > 0)))
        metrics["auc"].append(float(roc_auc_score(y_test, scores)))
        metrics["train_accuracy"].append(float(probe.score(scaler.transform(x[train]), y_train)))
        # w.((x - mean) / scale) = (w / scale).x + const: the direction in the original activation space.
        weights = torch.tensor(probe.coef_[0] / scaler.scale_, dtype=torch.float32)
        vectors.append(weights / weights.norm())
    return Directions(torch.stack(vectors), layers, "probe", model, data, metrics)


def cosine_matrix(first: Directions | torch.Tensor, second: Directions | torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarity of every direction in ``first`` with every one in ``second`` (default: itself).

    ``cosine_matrix(d)`` is the layer-by-layer matrix of one set; ``cosine_matrix(a, b)`` compares two
    models or fine-tunes, whose diagonal is the same-layer agreement.
    """
    a = first.vectors if isinstance(first, Directions) else first
    b = a if second is None else second.vectors if isinstance(second, Directions) else second
    if a.shape[-1] != b.shape[-1]:
        raise EmkitError(f"directions of width {a.shape[-1]} and {b.shape[-1]} cannot be compared",
                         fix="compare directions from models with the same hidden size")
    a = torch.nn.functional.normalize(a.float(), dim=-1)
    b = torch.nn.functional.normalize(b.float(), dim=-1)
    return a @ b.T
