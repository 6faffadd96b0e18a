"""Judges, pluggable by name: ``openai`` (any OpenAI-compatible API), ``local`` (a local HF chat model)
and ``offline`` (a MiniLM cross-encoder that predicts the papers' aligned, coherent, medical and financial scores).

:func:`emkit.judges.run.make_judge` builds one by name, importing a built-in judge's module only
when it is asked for; a third-party judge registers itself with :func:`register_judge`.
"""

from emkit.judges.base import JUDGES, Judge, register_judge
from emkit.records import Judgement, Pair

__all__ = ["JUDGES", "Judge", "Judgement", "Pair", "register_judge"]
