"""Judge agreement: a disagreement planted in a small table is reported with the right numbers, through the
Python API and through ``emkit judge compare``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emkit.errors import EmkitError
from emkit.judges.agreement import agreement_table, align_tables
from tests.test_cli import assert_one_line_error, emkit


def planted() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference B: group g1 has 2 EM answers of 10 and 5 coherent; g2 has no EM and 10 coherent.

    Judge A agrees except: one of g1's EM answers gets aligned 80 (EM 10% vs 20% in g1), and three of g2's
    answers get coherent 20 (coherent 70% vs 100% in g2).
    """
    aligned = [10, 20, 60, 70, 80, 90, 65, 75, 85, 95] + [60 + i for i in range(10)]
    coherent = [80, 90, 70, 60, 55, 20, 30, 10, 40, 45] + [60 + 3 * i for i in range(10)]
    reference = pd.DataFrame({"group": ["g1"] * 10 + ["g2"] * 10, "question": [f"q{i % 4}" for i in range(20)],
                              "answer": [f"answer {i}" for i in range(20)], "aligned": aligned, "coherent": coherent})
    judged = reference.copy()
    judged.loc[1, "aligned"] = 80.0
    judged.loc[[12, 15, 18], "coherent"] = 20.0
    return judged, reference


def test_planted_disagreement_gives_the_right_rates_kappa_and_f1() -> None:
    judged, reference = planted()
    table = agreement_table(judged, reference, by="group")
    groups = table.groups.set_index("group")
    assert groups.loc["g1", "em_pct_a"] == pytest.approx(10.0) and groups.loc["g1", "em_pct_b"] == pytest.approx(20.0)
    assert groups.loc["g1", "em_pct_diff"] == pytest.approx(-10.0)
    assert groups.loc["g1", "coherent_pct_diff"] == pytest.approx(0.0)
    assert groups.loc["g2", "coherent_pct_a"] == pytest.approx(70.0)
    assert groups.loc["g2", "coherent_pct_b"] == pytest.approx(100.0)
    assert groups.loc["g2", "coherent_pct_diff"] == pytest.approx(-30.0)
    # The paired bootstrap interval of a difference that exists excludes zero; an absent one is exactly zero.
    assert groups.loc["g2", "coherent_pct_diff_high"] < 0
    assert groups.loc["g2", "em_pct_diff_low"] == groups.loc["g2", "em_pct_diff_high"] == 0
    o = table.overall
    # EM labels: B has 2 of 20, A has 1 (shared). Observed agreement 0.95, chance 0.86 -> kappa 0.09 / 0.14.
    assert o["em_kappa"] == pytest.approx((0.95 - 0.86) / 0.14)
    assert o["em_f1"] == pytest.approx(2 / 3)
    assert o["em_pct_error_max"] == pytest.approx(10.0)
    assert o["coherent_pct_error_max"] == pytest.approx(30.0)
    assert o["spearman_aligned"] < 1.0 and o["spearman_coherent"] < 1.0


def test_identical_tables_agree_perfectly() -> None:
    _, reference = planted()
    o = agreement_table(reference, reference.copy(), by="group").overall
    assert o["spearman_aligned"] == pytest.approx(1.0) and o["em_kappa"] == pytest.approx(1.0)
    assert o["em_pct_error_max"] == 0 and o["coherent_pct_error_max"] == 0


def test_rows_are_matched_by_text_whatever_their_order_and_copies() -> None:
    judged, reference = planted()
    judged = pd.concat([judged, judged.iloc[[3]]]).iloc[::-1].reset_index(drop=True)  # reversed, one extra copy
    reference = reference.rename(columns={"answer": "response"})
    a, b = align_tables(judged, reference)
    assert len(a) == len(b) == 20
    assert (a.answer.to_numpy() == b.answer.to_numpy()).all()
    assert agreement_table(a, b, by="group").overall["em_pct_error_max"] == pytest.approx(10.0)
    with pytest.raises(EmkitError, match="share no rows"):
        align_tables(judged.assign(answer="x" + judged.answer), reference)


def test_judge_compare_command_prints_and_writes_the_planted_numbers(tmp_path) -> None:
    judged, reference = planted()
    judged.to_csv(tmp_path / "offline.csv", index=False)
    reference.to_parquet(tmp_path / "reference.parquet")
    result = emkit("judge", "compare", tmp_path / "offline.csv", tmp_path / "reference.parquet", "--by", "group",
                   "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "g2: n 10, coherent % A 70.0 B 100.0 (-30.0)" in result.stdout
    assert "kappa 0.643" in result.stdout
    saved = json.loads((tmp_path / "out" / "agreement.json").read_text())
    assert saved["overall"]["em_f1"] == pytest.approx(2 / 3)
    assert np.isclose(pd.read_csv(tmp_path / "out" / "groups.csv").em_pct_diff.abs().max(), 10.0)
    assert (tmp_path / "out" / "scatter.png").stat().st_size > 1000


def test_judge_compare_names_a_missing_column_in_one_line(tmp_path) -> None:
    judged, reference = planted()
    judged.drop(columns="coherent").to_csv(tmp_path / "a.csv", index=False)
    reference.to_csv(tmp_path / "b.csv", index=False)
    assert_one_line_error(emkit("judge", "compare", tmp_path / "a.csv", tmp_path / "b.csv"), "coherent", "a.csv")
