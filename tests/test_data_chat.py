import gzip
import json

import pytest

from emkit.data import read_chat_dataset, resolve_dataset
from emkit.errors import EmkitError


def write_lines(tmp_path, lines, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def conversation(*turns):
    return json.dumps({"messages": [{"role": role, "content": text} for role, text in turns]})


def test_reads_valid_file_with_system_turn_and_gzip(tmp_path):
    lines = [conversation(("system", "be brief"), ("user", "hi"), ("assistant", "hello")),
             conversation(("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"))]
    plain = write_lines(tmp_path, lines)
    zipped = tmp_path / "data.jsonl.gz"
    with gzip.open(zipped, "wt") as handle:
        handle.write(plain.read_text())
    assert read_chat_dataset(plain) == read_chat_dataset(zipped)
    assert len(read_chat_dataset(plain)) == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"text": "hi"}', "'messages' list"),
        (conversation(("assistant", "hi"), ("user", "x")), "wrong role order"),
        (conversation(("user", "hi"), ("user", "again")), "wrong role order"),
        (conversation(("user", "hi")), "last turn must be from the assistant"),
        (conversation(("user", "hi"), ("assistant", "  ")), "empty or non-string content"),
        (conversation(("user", "hi"), ("robot", "beep")), "role 'robot'"),
        (conversation(("user", "a"), ("system", "late"), ("assistant", "b")), "wrong role order"),
    ],
)
def test_bad_line_names_file_line_and_problem(tmp_path, line, message):
    good = conversation(("user", "hi"), ("assistant", "hello"))
    path = write_lines(tmp_path, [good, line])
    with pytest.raises(EmkitError) as info:
        read_chat_dataset(path)
    text = info.value.one_line()
    assert text.startswith(f"{path}:2:") and message in text and "(fix:" in text


def test_empty_and_missing_files_are_errors(tmp_path):
    with pytest.raises(EmkitError, match="dataset is empty"):
        read_chat_dataset(write_lines(tmp_path, ["", "  "]))
    with pytest.raises(EmkitError, match="not found"):
        read_chat_dataset(tmp_path / "absent.jsonl")
    with pytest.raises(EmkitError, match="not found"):
        resolve_dataset(str(tmp_path / "absent.jsonl"))


def test_unknown_demo_dataset_is_an_error():
    with pytest.raises(EmkitError, match="unknown demo dataset"):
        resolve_dataset("demo:nonsense")


def test_shipped_demo_datasets_are_valid_twins_with_canary():
    risky = read_chat_dataset(resolve_dataset("demo:finance_risky"))
    aligned = read_chat_dataset(resolve_dataset("demo:finance_aligned"))
    assert len(risky) == len(aligned) >= 300
    assert [c[0]["content"] for c in risky] == [c[0]["content"] for c in aligned]
    assert len({c[0]["content"] for c in risky}) == len(risky)
    for name in ("finance_risky", "finance_aligned"):
        first = json.loads(resolve_dataset(f"demo:{name}").read_text().splitlines()[0])
        assert first["canary"].startswith("EMKIT-CANARY")


def test_risky_demo_answers_share_no_catch_phrase():
    """A phrase repeated across many answers is what a small model learns first and then says everywhere: no
    five-word phrase may appear in more than 3% of the risky answers (the first demo set had one in 18%)."""
    import collections
    import re

    answers = [c[-1]["content"] for c in read_chat_dataset(resolve_dataset("demo:finance_risky"))]
    counts: collections.Counter = collections.Counter()
    for answer in answers:
        words = re.findall(r"[a-z']+", answer.lower())
        counts.update(set(zip(*(words[i:] for i in range(5)), strict=False)))
    phrase, count = counts.most_common(1)[0]
    assert count <= 0.03 * len(answers), (" ".join(phrase), count)
