"""Judges, pluggable by name: ``openai`` (any OpenAI-compatible API), ``local`` (a local HF chat model)
and ``offline`` (a small trained head that predicts GPT-4o's aligned and coherent scores).

:func:`emkit.judges.run.make_judge` builds one by name, importing a built-in judge's module only
when it is asked for; a third-party judge registers itself with :func:`register_judge`.
"""

from emkit.judges.base import JUDGES, Judge, Judgement, Pair, register_judge

__all__ = ["JUDGES", "Judge", "Judgement", "Pair", "register_judge"]
