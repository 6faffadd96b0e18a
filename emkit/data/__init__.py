"""Datasets: reading and validating chat JSONL, the shipped demo data, and the papers' data."""

from emkit.data.chat import read_chat_dataset, resolve_dataset

__all__ = ["read_chat_dataset", "resolve_dataset"]
