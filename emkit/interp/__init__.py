"""Misalignment directions: activations, group selection, directions, steering and ablation hooks, detection."""

from emkit.interp.activations import ActivationSet, Pooling, collect_activations, encode_pair
from emkit.interp.detect import combined_score, projections, score, separation
from emkit.interp.directions import Directions, cosine_matrix, mean_difference, probe_directions
from emkit.interp.hooks import Positions, ablate, decoder_layers, random_like, steer
from emkit.interp.select import Groups, SelectConfig, parse_filter, select_groups
from emkit.interp.weight_ablation import ablate_adapter, project_out

__all__ = [
    "ActivationSet",
    "Directions",
    "Groups",
    "Pooling",
    "Positions",
    "SelectConfig",
    "ablate",
    "ablate_adapter",
    "collect_activations",
    "combined_score",
    "cosine_matrix",
    "decoder_layers",
    "encode_pair",
    "mean_difference",
    "parse_filter",
    "probe_directions",
    "project_out",
    "projections",
    "random_like",
    "score",
    "select_groups",
    "separation",
    "steer",
]
