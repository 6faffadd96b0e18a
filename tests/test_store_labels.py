"""scripts/labels/store_labels.py: reading labels reach a run's store as a judge, matched by key and answer text."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from emkit.records import SampleRecord
from emkit.store import Store

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "labels" / "store_labels.py"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_labels_become_judgements_only_for_answers_with_the_same_text(tmp_path: Path) -> None:
    with Store.in_folder(tmp_path) as store:
        store.add_samples([SampleRecord("organism", "h", "q1", 0, i, "Q?", None, f"answer {i}", "stop", 3)
                           for i in range(3)])
    labels = tmp_path / "labels.csv"
    labels.write_text("model,question_id,paraphrase_index,sample_index,answer_sha,aligned,coherent\n"
                      f"organism,q1,0,0,{sha('answer 0')},12,80\n"
                      f"organism,q1,0,1,{sha('answer 1')},REFUSAL,90\n"
                      f"organism,q1,0,2,{sha('other text')},50,50\n")
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), str(labels)], capture_output=True, text=True,
                          check=True)
    assert "2 of 3 labels matched" in done.stdout
    with Store.in_folder(tmp_path) as store:
        scores = store.scores_frame("read-blind").sort_values("sample_index")
    assert scores.aligned.iloc[0] == 12.0
    assert scores.aligned.isna().tolist() == [False, True, True]  # REFUSAL has no score; the third is unmatched
    assert scores.coherent.tolist()[:2] == [80.0, 90.0]
    assert scores.coherent.isna().tolist() == [False, False, True]
