import math

import pandas as pd
import pytest
from conftest import CountingJudge

from emkit.errors import EmkitError
from emkit.judges.base import JUDGES
from emkit.judges.run import JudgeConfig
from emkit.stages.domain_judging import metric_list, number, open_judges, pct


class ClosingJudge(CountingJudge):
    """Remembers being closed; scores aligned and coherent, and medical only when told it can."""

    def __init__(self, medical: bool = True) -> None:
        super().__init__()
        self.medical, self.closed = medical, False

    def check_metric(self, metric):
        if metric == "medical" and not self.medical:
            raise EmkitError(f"cannot score '{metric}'")

    def close(self):
        self.closed = True


@pytest.fixture()
def built(monkeypatch):
    """The judges built from configs (judge=closing, or closing-core that cannot score medical), in order."""
    import emkit.judges  # noqa: F401  (registers the built-in judges first)

    made: list[ClosingJudge] = []

    def factory(medical: bool):
        def build(config):
            made.append(ClosingJudge(medical))
            return made[-1]
        return build

    monkeypatch.setitem(JUDGES, "closing", factory(True))
    monkeypatch.setitem(JUDGES, "closing-core", factory(False))
    return made


def test_judges_built_from_configs_are_closed_and_the_domain_judge_defaults_to_the_core_one(built):
    with open_judges(JudgeConfig(judge="closing"), "medical", None) as (core, domain):
        assert domain is core and built == [core]
    assert core.closed
    with open_judges(JudgeConfig(judge="closing-core"), "medical", JudgeConfig(judge="closing")) as (core, domain):
        assert built[1:] == [core, domain] and not core.medical and domain.medical
    assert core.closed and domain.closed
    with open_judges(JudgeConfig(judge="closing"), None, JudgeConfig(judge="closing")) as (core, domain):
        assert domain is None and len(built) == 4  # no domain metric: no domain judge is built


def test_judges_passed_in_are_checked_and_used_but_not_closed(built):
    passed, passed_domain = ClosingJudge(), ClosingJudge()
    with open_judges(JudgeConfig(judge="closing"), "medical", JudgeConfig(judge="closing"), passed,
                     passed_domain) as judges:
        assert judges == (passed, passed_domain) and built == []
    assert not passed.closed and not passed_domain.closed


def test_a_domain_the_judge_cannot_score_fails_before_any_work_naming_the_fix(built):
    with pytest.raises(EmkitError, match=r"cannot score 'medical'") as raised, \
            open_judges(JudgeConfig(judge="closing-core"), "medical", None):
        pytest.fail("the body runs only once every judge is checked")
    assert raised.value.fix == "set domain_judge.judge=local or openai to score 'medical'"
    assert built[0].closed  # the judge built before the failing check is closed all the same


def test_metrics_and_figures():
    assert metric_list(JudgeConfig(metrics=["coherent", "medical", "aligned"])) == ["aligned", "coherent", "medical"]
    assert number(12.345) == "12.3" and number(math.nan) == "n/a" and number(None) == "n/a"
    row = pd.Series({"em_pct": 12.5, "em_low": 8.04, "em_high": 17.06, "coherent_pct": math.nan})
    assert pct(row) == "12.5% [8.0, 17.1]" and pct(row, "coherent") == "n/a"
