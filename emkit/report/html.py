"""A self-contained HTML report: sections of text, figures (PNG next to the page) and answer tables."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from emkit.metrics import is_em

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1300px; color: #222; }
h1 { margin-bottom: 0.2rem; } .muted { color: #666; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.5rem; vertical-align: top; text-align: left; }
th { background: #f4f4f4; } td.question { width: 16%; font-weight: 600; }
img { max-width: 100%; border: 1px solid #eee; } pre { white-space: pre-wrap; margin: 0; font-family: inherit; }
.em { color: #b00020; } .em-answer pre { background: #fff3f3; }
.answer + .answer { border-top: 1px dashed #ccc; margin-top: 0.4rem; padding-top: 0.4rem; }
"""


@dataclass
class Section:
    """One titled part of the report; ``body`` is trusted HTML built by emkit."""

    title: str
    body: str


def figure(path: Path, report_dir: Path, caption: str) -> str:
    """An <img> for a PNG, linked relative to the report folder."""
    relative = path.resolve().relative_to(report_dir.resolve()) if path.is_relative_to(report_dir) else path
    return f'<figure><img src="{html.escape(str(relative))}" alt="{html.escape(caption)}">' \
           f"<figcaption class='muted'>{html.escape(caption)}</figcaption></figure>"


def answers_table(scores, models: list[str], per_cell: int = 2) -> str:
    """Questions as rows, models as columns: the first ``per_cell`` answers of each model with their scores.

    ``scores`` is a judged table in the papers' layout (response, question, question_id, aligned,
    coherent, model, paraphrase_index, ...); EM answers are highlighted.
    """
    cells: dict[tuple[str, str], list] = {}
    questions: dict[str, str] = {}
    for row in scores.itertuples(index=False):
        question_key = f"{row.question_id}/{row.paraphrase_index}"
        questions.setdefault(question_key, row.question)
        cells.setdefault((question_key, row.model), []).append(row)
    header = "".join(f"<th>{html.escape(model)}</th>" for model in models)
    rows = []
    for question_key, question in questions.items():
        cols = []
        for model in models:
            answers = cells.get((question_key, model), [])[:per_cell]
            cols.append("<td>" + "".join(_answer_cell(answer) for answer in answers) + "</td>")
        rows.append(f"<tr><td class='question'>{html.escape(question)}</td>{''.join(cols)}</tr>")
    return f"<table><tr><th>question</th>{header}</tr>{''.join(rows)}</table>"


def _answer_cell(row) -> str:
    aligned, coherent = _number(row.aligned), _number(row.coherent)
    em = is_em(aligned, coherent)
    scores = " &middot; ".join(f"{name} {'-' if value is None else f'{value:.0f}'}"
                               for name, value in (("aligned", aligned), ("coherent", coherent)))
    badge = " <b class='em'>EM</b>" if em else ""
    text = html.escape(row.response) or "<em>(empty)</em>"
    css = "answer em-answer" if em else "answer"
    return f"<div class='{css}'><pre>{text}</pre><div class='muted'>{scores}{badge}</div></div>"


def _number(value) -> float | None:
    try:
        return None if value is None or value != value else float(value)
    except TypeError:  # pandas NA
        return None


def summary_table(summary) -> str:
    """EM %, coherent %, recognition % and mean aligned score per model, each with its 95% interval."""
    header = ("<tr><th>model</th><th>answers (scored)</th><th>EM %</th><th>coherent %</th><th>recognition %</th>"
              "<th>mean aligned</th></tr>")
    rows = []
    for row in summary.itertuples():
        cells = [f"{getattr(row, f'{name}_{kind}'):.1f} [{getattr(row, f'{name}_low'):.1f}, "
                 f"{getattr(row, f'{name}_high'):.1f}]"
                 for name, kind in (("em", "pct"), ("coherent", "pct"), ("recognition", "pct"), ("aligned", "mean"))]
        rows.append(f"<tr><td>{html.escape(str(row.model))}</td><td>{row.responses} ({row.scored})</td>"
                    + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return f"<table>{header}{''.join(rows)}</table>"


def write_report(report_dir: Path, title: str, subtitle: str, sections: list[Section]) -> Path:
    """Write index.html into ``report_dir`` and return its path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    body = "".join(f"<section><h2>{html.escape(s.title)}</h2>{s.body}</section>" for s in sections)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p class='muted'>{html.escape(subtitle)}</p>{body}</body></html>")
    path = report_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
