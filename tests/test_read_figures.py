"""scripts/labels/read_figures.py: figures per condition from reading labels; the share of EM removed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "labels" / "read_figures.py"
spec = importlib.util.spec_from_file_location("read_figures", SCRIPT)
read_figures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(read_figures)


def labels_file(path: Path) -> Path:
    """Base: 10 aligned answers and one refusal; organism: 4 EM of 10; ablated: 1 EM of 10 (pooled over two labels)."""
    rows = ["model,question_id,paraphrase_index,sample_index,answer_sha,aligned,coherent"]
    rows += [f"base,q,0,{i},s{i},90,80" for i in range(10)] + ["base,q,0,10,s10,REFUSAL,90"]
    rows += [f"org,q,0,{i},o{i},{10 if i < 4 else 80},90" for i in range(10)]
    rows += [f"abl-a,q,0,{i},a{i},{10 if i < 1 else 80},90" for i in range(5)]
    rows += [f"abl-b,q,0,{i},b{i},80,90" for i in range(5)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_removed_share_is_one_at_the_reference_and_zero_at_the_organism() -> None:
    organism, reference = np.array([1.0, 1, 0, 0]), np.zeros(4)
    assert read_figures.removed_share(organism, reference, reference)[0] == 1.0
    assert read_figures.removed_share(organism, organism, reference)[0] == 0.0
    assert read_figures.removed_share(organism, np.array([1.0, 0, 0, 0]), reference)[0] == 0.5


def test_pooled_conditions_and_the_share_of_em_removed(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), str(labels_file(tmp_path / "labels.csv")),
                           "--reference", "base", "--organism", "organism=org", "--conditions", "ablated=abl-a+abl-b"],
                          capture_output=True, text=True, check=True)
    lines = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.split()}
    assert lines["base"][1:4] == ["11", "10", "0.0"]  # the refusal has no aligned score: not in EM %
    assert lines["organism"][3] == "40.0"
    assert lines["ablated"][1:4] == ["10", "10", "10.0"]
    assert "ablated: removes 75% " in done.stdout  # (40 - 10) / (40 - 0)


def test_an_unknown_label_is_one_error_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), str(labels_file(tmp_path / "labels.csv")),
                           "--conditions", "nothing-here"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: no labelled answers for nothing-here; labels present: abl-a, abl-b, base, org"]
