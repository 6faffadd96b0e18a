from pathlib import Path

import pytest

from emkit.errors import EmkitError
from emkit.train import TrainConfig


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_yaml_then_overrides_take_precedence(tmp_path):
    path = write(tmp_path, "datasets: [a.jsonl]\nbatch_size: 2\nlora:\n  rank: 4\n")
    config = TrainConfig.load(path, ["batch_size=8", "lora.alpha=16", "learning_rate=1e-4"])
    assert config.batch_size == 8 and config.lora.rank == 4 and config.lora.alpha == 16
    assert config.learning_rate == pytest.approx(1e-4)


def test_round_trip_through_yaml_keeps_hash(tmp_path):
    config = TrainConfig.load(overrides=["datasets=[x.jsonl]", "seed=3"])
    again = TrainConfig.load(write(tmp_path, config.to_yaml()))
    assert again == config and again.config_hash() == config.config_hash()


def test_wrong_type_names_file_line_and_field(tmp_path):
    path = write(tmp_path, "datasets: [a.jsonl]\n\nlora:\n  rank: lots\n")
    with pytest.raises(EmkitError) as info:
        TrainConfig.load(path)
    message = info.value.one_line()
    assert f"{path}:4:" in message and "lora.rank" in message and "fix:" in message


def test_unknown_field_is_reported_with_its_line(tmp_path):
    path = write(tmp_path, "datasets: [a.jsonl]\nlearning_rat: 0.1\n")
    with pytest.raises(EmkitError, match=r"config.yaml:2: unknown config field 'learning_rat'"):
        TrainConfig.load(path)


def test_invalid_yaml_reports_line(tmp_path):
    path = write(tmp_path, "datasets: [a.jsonl]\nbatch_size: [1, 2\nseed: 1\n")
    with pytest.raises(EmkitError, match=r"invalid YAML") as info:
        TrainConfig.load(path)
    assert info.value.line is not None


def test_bad_override_names_the_override():
    with pytest.raises(EmkitError, match=r"override 'batch_size=-1'"):
        TrainConfig.load(overrides=["datasets=[a]", "batch_size=-1"])
    with pytest.raises(EmkitError, match="key=value"):
        TrainConfig.load(overrides=["batch_size"])


def test_missing_required_field_is_an_error():
    with pytest.raises(EmkitError, match="datasets"):
        TrainConfig.load()


def test_unknown_override_key_quotes_it_and_suggests_the_nearest():
    with pytest.raises(EmkitError) as info:
        TrainConfig.load(overrides=["datasets=[a]", "lora.rnak=4"])
    message = info.value.one_line()
    assert "override 'lora.rnak=4'" in message and "unknown config key 'lora.rnak'" in message
    assert "did you mean 'lora.rank'?" in message


def test_override_below_a_single_value_names_the_right_spelling():
    from emkit.judges.run import JudgeConfig

    with pytest.raises(EmkitError) as info:
        JudgeConfig.load(overrides=["judge=openai", "judge.base_url=http://127.0.0.1:1/v1"])
    message = info.value.one_line()
    assert "override 'judge.base_url=http://127.0.0.1:1/v1'" in message
    assert "'judge' is a single value" in message and "did you mean 'base_url'?" in message


def test_unknown_yaml_field_suggests_the_nearest(tmp_path):
    path = write(tmp_path, "datasets: [a.jsonl]\nlearning_rat: 0.1\n")
    with pytest.raises(EmkitError, match=r"did you mean 'learning_rate'\?") as info:
        TrainConfig.load(path)
    assert info.value.line == 2
