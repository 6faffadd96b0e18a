"""Judges, pluggable by name: ``openai`` (any OpenAI-compatible API), ``local`` (a local HF chat model)
and ``offline`` (a small trained head that predicts GPT-4o's aligned and coherent scores).

Importing this package registers the built-in judges; :func:`emkit.judges.run.make_judge` builds one.
"""

from emkit.judges.base import JUDGES, Judge, Judgement, Pair, register_judge

__all__ = ["JUDGES", "Judge", "Judgement", "Pair", "register_judge"]
