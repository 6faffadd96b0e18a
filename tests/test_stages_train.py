from emkit.stages import stage
from emkit.stages import train as train_stage
from emkit.train import TrainConfig


def test_the_stage_trains_once_and_says_where_the_weights_are(tiny_model, chat_file, tmp_path):
    assert stage("train").config() is TrainConfig
    config = train_stage.CONFIG.load(overrides=[f"model={tiny_model}", f"datasets=[{chat_file}]",
                                                f"output_dir={tmp_path / 'run'}", "max_steps=2", "dtype=float32"])
    result = train_stage.run(config, show_progress=False)
    assert result.steps == 2 and result.final_path == tmp_path / "run" / "adapter"
    assert train_stage.summary_lines(result, config) == [f"trained 2 steps; weights in {tmp_path / 'run' / 'adapter'}"]
    stamp = (tmp_path / "run" / "summary.json").stat().st_mtime_ns
    again = train_stage.run(config, show_progress=False)
    assert again.steps == 2 and (tmp_path / "run" / "summary.json").stat().st_mtime_ns == stamp
