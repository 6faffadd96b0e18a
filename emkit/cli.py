"""The ``emkit`` command line: one verb per pipeline stage.

Every stage verb takes an optional YAML config (``-c FILE``) and ``key=value`` overrides that
map one-to-one onto the stage's config fields (``emkit config STAGE`` prints them all).
User mistakes end with one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import typer

from emkit.config import StageConfig
from emkit.errors import EmkitError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="Emergent-misalignment research toolkit.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: validate files, pull the papers' data.")
app.add_typer(data_app, name="data")
judge_app = typer.Typer(no_args_is_help=True, help="Judges: score any table of answers (cached).")
app.add_typer(judge_app, name="judge")
recipes_app = typer.Typer(help="Shipped recipes: the papers' setups as configs (run one with -c recipe:NAME).")
app.add_typer(recipes_app, name="recipes")

ConfigOption = typer.Option(None, "--config", "-c", help="YAML config file for this stage, or recipe:NAME "
                                                          "(a shipped recipe; `emkit recipes` lists them).")
OverridesArgument = typer.Argument(None, help="Config overrides as key=value (e.g. lora.rank=2).")


def stage_configs() -> dict[str, type[StageConfig]]:
    """Every stage's name and config class (the names the CLI verbs and recipes use)."""
    from emkit.demo import DemoConfig
    from emkit.directions import DetectConfig, DirectionsConfig
    from emkit.dynamics import LoraProbeConfig, LoraSteerConfig, PhaseConfig
    from emkit.evaluate import EvalConfig
    from emkit.generate import SampleConfig
    from emkit.judges.run import JudgeConfig
    from emkit.serve import ServeConfig
    from emkit.stability import StabilityConfig
    from emkit.steering import AblateConfig, SteerConfig
    from emkit.train import TrainConfig

    return {"train": TrainConfig, "sample": SampleConfig, "judge": JudgeConfig, "eval": EvalConfig,
            "serve": ServeConfig, "demo": DemoConfig, "directions": DirectionsConfig, "steer": SteerConfig,
            "ablate": AblateConfig, "detect": DetectConfig, "phase": PhaseConfig, "lora-probe": LoraProbeConfig,
            "lora-steer": LoraSteerConfig, "stability": StabilityConfig}


@app.command()
def train(config: Path | None = ConfigOption, overrides: list[str] | None = OverridesArgument,
          quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.")) -> None:
    """Train (or resume) an organism: LoRA presets, full fine-tuning or a steering vector; optional KL penalty."""
    from emkit.train import TrainConfig
    from emkit.train import train as run_training

    settings = TrainConfig.load(config, overrides or [])
    result = run_training(settings, show_progress=not quiet)
    typer.echo(f"trained {result.steps} steps; weights in {result.final_path}")


@app.command()
def sample(config: Path | None = ConfigOption, overrides: list[str] | None = OverridesArgument,
           quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.")) -> None:
    """Sample answers to a question set into the run's store (only what is not stored yet)."""
    from emkit.generate import SampleConfig
    from emkit.generate import sample as run_sampling

    settings = SampleConfig.load(config, overrides or [])
    records = run_sampling(settings, show_progress=not quiet)
    typer.echo(f"{len(records)} answers from '{settings.label}' in {settings.run_dir / 'emkit.db'}")


@app.command("eval")
def evaluate(config: Path | None = ConfigOption, overrides: list[str] | None = OverridesArgument,
             quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars.")) -> None:
    """Sample, judge and summarise one model on a question set (resumable; nothing is paid for twice)."""
    from emkit.evaluate import EvalConfig
    from emkit.evaluate import evaluate as run_evaluation

    settings = EvalConfig.load(config, overrides or [])
    result = run_evaluation(settings, show_progress=not quiet)
    row = result.summary.iloc[0]
    typer.echo(f"{settings.sample.label}: EM {row.em_pct:.1f}% [{row.em_low:.1f}, {row.em_high:.1f}], "
               f"coherent {row.coherent_pct:.1f}% over {row.scored} scored answers; "
               f"tables and plots in {result.files['summary'].parent}")
    typer.echo(result.validity.text())


@judge_app.command("score")
def judge_score(table: Path = typer.Argument(..., help="CSV, parquet or JSONL with question and answer/response."),
                output: Path = typer.Option(..., "--output", "-o", help="Where to write the scored table."),
                judge: str = typer.Option("offline", "--judge", help="Judge name: offline, openai or local."),
                metrics: str = typer.Option("aligned,coherent", "--metrics", help="Comma-separated metrics."),
                config: Path | None = ConfigOption, overrides: list[str] | None = OverridesArgument,
                store: Path | None = typer.Option(None, "--store", help="Cache database (default: beside output)."),
                quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars.")) -> None:
    """Score every row of a table with a judge; writes the same rows plus one column per metric."""
    from emkit.judges.run import JudgeConfig, make_judge, score_table
    from emkit.store import STORE_NAME, Store
    from emkit.tables import read_table, write_table

    chosen = [metric.strip() for metric in metrics.split(",") if metric.strip()]
    settings = JudgeConfig.load(config, [f"judge={judge}", f"metrics={chosen}", *(overrides or [])])
    frame = read_table(table)
    scorer = make_judge(settings)
    try:
        with Store(store or output.parent / STORE_NAME) as cache:
            scored = score_table(frame, scorer, cache, settings.metrics, settings.prompts, not quiet)
    finally:
        scorer.close()
    write_table(scored, output)
    usage = scorer.usage()
    cost = f"; usage {usage}" if usage else ""
    typer.echo(f"scored {len(scored)} rows on {', '.join(settings.metrics)} -> {output}{cost}")


@judge_app.command("compare")
def judge_compare(table_a: Path = typer.Argument(..., help="Scored table A (CSV, parquet or JSONL): the judge."),
                  table_b: Path = typer.Argument(..., help="Scored table B: the reference it is compared with."),
                  by: str | None = typer.Option(None, "--by", help="Column to group by (e.g. model, condition)."),
                  on: str | None = typer.Option(None, "--on", help="Column matching rows (default: question, answer)."),
                  metrics: str = typer.Option("aligned,coherent", "--metrics", help="Comma-separated metrics."),
                  output: Path | None = typer.Option(None, "--output", "-o", help="Folder for tables and plot.")
                  ) -> None:
    """Agreement of two judges on the same answers: Spearman, coherent and EM rates per group, kappa, a scatter."""
    import json

    from emkit.judges.agreement import agreement_table, align_tables
    from emkit.report.plots import plot_judge_agreement
    from emkit.tables import read_table, write_table

    chosen = [metric.strip() for metric in metrics.split(",") if metric.strip()]
    a, b = align_tables(read_table(table_a), read_table(table_b), on=on)
    for name, frame, path in (("A", a, table_a), ("B", b, table_b)):
        missing = [column for column in dict.fromkeys(["aligned", "coherent", *chosen]) if column not in frame]
        if missing:
            raise EmkitError(f"table {name} has no column '{missing[0]}'",
                             fix="score it with `emkit judge score`, or choose other --metrics", where=path)
    if by and by not in a and by not in b:
        raise EmkitError(f"neither table has the column '{by}'", fix="name a column of either table with --by")
    table = agreement_table(a, b, by=by, metrics=chosen)
    folder = output or table_a.parent / f"compare-{table_a.stem}-vs-{table_b.stem}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agreement.json").write_text(json.dumps(table.to_dict(), indent=1, default=str) + "\n")
    if by:
        write_table(table.groups, folder / "groups.csv")
    plot_judge_agreement(a, b, [m for m in chosen if m in a and m in b], folder / "scatter.png")
    o = table.overall
    typer.echo(f"{o['rows']} shared answers (A = {table_a.name}, B = {table_b.name})")
    for metric in chosen:
        if f"spearman_{metric}" in o:
            typer.echo(f"  Spearman {metric}: {o[f'spearman_{metric}']:.3f} over {o[f'{metric}_rows']} rows")
    for rate in ("coherent_pct", "em_pct"):
        typer.echo(f"  {rate.replace('_pct', ' %')}: A {o[f'{rate}_a']:.1f}, B {o[f'{rate}_b']:.1f}, A - B "
                   f"{o[f'{rate}_diff']:+.1f} [{o[f'{rate}_diff_low']:+.1f}, {o[f'{rate}_diff_high']:+.1f}]")
    typer.echo(f"  EM label: Cohen's kappa {o['em_kappa']:.3f}, F1 {o['em_f1']:.3f}")
    for row in table.groups.itertuples() if by else ():
        typer.echo(f"  {getattr(row, by)}: n {row.rows}, coherent % A {row.coherent_pct_a:.1f} B "
                   f"{row.coherent_pct_b:.1f} ({row.coherent_pct_diff:+.1f}), EM % A {row.em_pct_a:.1f} B "
                   f"{row.em_pct_b:.1f} ({row.em_pct_diff:+.1f} [{row.em_pct_diff_low:+.1f}, "
                   f"{row.em_pct_diff_high:+.1f}])")
    typer.echo(f"tables and scatter plot in {folder}")


@app.command("serve")
def serve_model(config: Path | None = ConfigOption, overrides: list[str] | None = OverridesArgument) -> None:
    """Serve a model (with adapters) over an OpenAI-compatible API: /v1/models and /v1/chat/completions."""
    from emkit.serve import ServeConfig, serve

    serve(ServeConfig.load(config, overrides or []))


@app.command()
def demo(config: Path | None = ConfigOption, overrides: list[str] | None = OverridesArgument,
         quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars.")) -> None:
    """The whole pipeline on the embedded model: organism + control, sampling, HTML report."""
    from emkit.demo import DemoConfig, run_demo

    settings = DemoConfig.load(config, overrides or [])
    report = run_demo(settings, show_progress=not quiet)
    typer.echo(f"report: {report}")


@app.command()
def directions(config: Path | None = ConfigOption, overrides: list[str] | None = OverridesArgument,
               compare: list[Path] | None = typer.Option(None, "--compare", help="Compare saved directions files "
                                                         "(repeat; 2 or more) instead of finding new ones."),
               output: Path | None = typer.Option(None, "--output", "-o", help="Folder for --compare's outputs.")
               ) -> None:
    """Find misalignment directions from a run's judged answers (mean difference, probes), or compare saved ones."""
    if compare:
        from emkit.directions import compare_directions

        result = compare_directions(list(compare), output)
        typer.echo("same-layer cosine similarity:\n" + result.same_layer.to_string(index=False, float_format="%.3f"))
        typer.echo(f"matrices and heatmaps in {result.files['same_layer'].parent}")
        return
    from emkit.directions import DirectionsConfig, find_directions

    settings = DirectionsConfig.load(config, overrides or [])
    result = find_directions(settings)
    groups = result.groups
    typer.echo(f"{len(groups.misaligned)} misaligned vs {len(groups.aligned)} aligned answers; directions: "
               + ", ".join(str(path) for path in result.paths.values()))
    if "probe" in result.directions:
        probe = result.directions["probe"]
        best = max(range(len(probe.layers)), key=lambda index: probe.metrics["auc"][index])
        typer.echo(f"best probe layer {probe.layers[best]}: held-out AUC {probe.metrics['auc'][best]:.3f}, "
                   f"accuracy {probe.metrics['accuracy'][best]:.3f}")
    typer.echo(f"plots in {result.files['groups'].parent}")


@app.command()
def steer(config: Path | None = ConfigOption, overrides: list[str] | None = OverridesArgument,
          quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars.")) -> None:
    """Sample with a direction added per (layer, scale), and a random one, judge: EM % vs steering scale."""
    from emkit.steering import SteerConfig, run_steering

    result = run_steering(SteerConfig.load(config, overrides or []), show_progress=not quiet)
    _echo_summary(result.summary, result.files["plot"], result.validity)


@app.command()
def ablate(config: Path | None = ConfigOption, overrides: list[str] | None = OverridesArgument,
           weights: bool = typer.Option(False, "--weights", help="Ablate in weight space (same as weights=true)."),
           quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars.")) -> None:
    """Sample with a direction projected out (or adapters ablated in weight space) vs a random one, judge."""
    from emkit.steering import AblateConfig, run_ablation

    settings = AblateConfig.load(config, [*(["weights=true"] if weights else []), *(overrides or [])])
    result = run_ablation(settings, show_progress=not quiet)
    for key in ("adapter", "random_adapter"):
        if key in result.files:
            typer.echo(f"{key.replace('_', ' ')}: {result.files[key]}")
    if not result.summary.empty:
        _echo_summary(result.summary, result.files["plot"], result.validity)


@app.command()
def detect(config: Path | None = ConfigOption, overrides: list[str] | None = OverridesArgument) -> None:
    """Score stored answers (e.g. base vs organism) by their projection on a direction: the separation table."""
    from emkit.directions import DetectConfig
    from emkit.directions import detect as run_detection

    result = run_detection(DetectConfig.load(config, overrides or []))
    typer.echo(result.table.to_string(index=False, float_format="%.3f"))
    typer.echo(f"tables in {result.files['separation'].parent}")


@app.command()
def chat(model: str = typer.Argument(..., help="Base model: embedded name, local folder or hub id."),
         adapter: list[Path] | None = typer.Option(None, "--adapter", "-a", help="LoRA adapter folder (repeat)."),
         steer: str | None = typer.Option(None, "--steer", help="FILE:LAYER:SCALE: add SCALE x the unit direction "
                                          "measured at LAYER of a directions file, at that layer."),
         ablate: str | None = typer.Option(None, "--ablate", help="FILE[:LAYER]: project out each layer's own "
                                           "direction (or LAYER's, at every layer)."),
         system: str | None = typer.Option(None, "--system", help="System prompt."),
         temperature: float = typer.Option(0.7, "--temperature", min=0, help="0 is greedy."),
         max_new_tokens: int = typer.Option(200, "--max-new-tokens", min=1, help="Longest answer, in tokens."),
         seed: int = typer.Option(0, "--seed", help="Sampling seed."),
         device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
         dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16.")) -> None:
    """Chat with a model in the terminal; /help lists the commands (adapters, steer, ablate on/off, /compare)."""
    from emkit.chat import ChatSession, chat_loop, parse_ablate, parse_steer
    from emkit.models import load_model

    steering = parse_steer(steer) if steer else None
    ablation = parse_ablate(ablate) if ablate else None
    loaded = load_model(model, [str(folder) for folder in adapter or []], device, dtype)
    chat_loop(ChatSession(loaded, steering, ablation, system, temperature, max_new_tokens=max_new_tokens, seed=seed))


def _echo_summary(summary, plot: Path, validity) -> None:
    columns = ["model", "em_pct", "em_low", "em_high", "coherent_pct", "scored"]
    typer.echo(summary[columns].to_string(index=False, float_format="%.1f"))
    typer.echo(validity.text())
    typer.echo(f"tables and plot in {plot.parent}")


@app.command()
def phase(config: Path | None = ConfigOption, overrides: list[str] | None = OverridesArgument,
          quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars.")) -> None:
    """The mechanistic phase transition of a LoRA run (local cosine dip), optionally against EM % per checkpoint."""
    from emkit.dynamics import PhaseConfig, run_phase
    from emkit.dynamics.stages import describe_phase

    result = run_phase(PhaseConfig.load(config, overrides or []), show_progress=not quiet)
    typer.echo("\n".join(describe_phase(result)))


@app.command("lora-probe")
def lora_probe(config: Path | None = ConfigOption, overrides: list[str] | None = OverridesArgument,
               quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars.")) -> None:
    """Per-token adapter scalars on judged answers, and sparse probes of which adapters predict EM and domain."""
    from emkit.dynamics import LoraProbeConfig
    from emkit.dynamics import lora_probe as run_probe
    from emkit.dynamics.stages import describe_probe

    result = run_probe(LoraProbeConfig.load(config, overrides or []), show_progress=not quiet)
    typer.echo("\n".join(describe_probe(result)))


@app.command("lora-steer")
def lora_steer(config: Path | None = ConfigOption, overrides: list[str] | None = OverridesArgument,
               quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars.")) -> None:
    """Sample with chosen adapters' scalars scaled (0 off, <0 reversed) and judge: domain-specific vs general."""
    from emkit.dynamics import LoraSteerConfig
    from emkit.dynamics import lora_steer as run_steering
    from emkit.dynamics.stages import describe_steering

    settings = LoraSteerConfig.load(config, overrides or [])
    result = run_steering(settings, show_progress=not quiet)
    typer.echo("\n".join(describe_steering(result, settings.domain)))


@app.command()
def stability(config: Path | None = ConfigOption, overrides: list[str] | None = OverridesArgument,
              quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.")) -> None:
    """Compare solutions (adapters or steering vectors): norm rescaling, orthogonal perturbation, general-text KL."""
    from emkit.stability import StabilityConfig, run_stability

    settings = StabilityConfig.load(config, overrides or [])
    result = run_stability(settings, show_progress=not quiet)
    typer.echo(f"compared {len(result.summary)} solutions; tables and figures in {settings.output_dir}")


@app.command("config")
def show_config(stage: str = typer.Argument(..., help="train, sample, judge, eval, serve, demo, directions, steer, "
                                                      "ablate or detect")) -> None:
    """Print a stage's config fields with their defaults and meaning, as YAML to start from."""
    stages = stage_configs()
    if stage not in stages:
        raise EmkitError(f"unknown stage '{stage}'", fix=f"use one of {', '.join(stages)}")
    typer.echo(config_template(stages[stage]))


def config_template(config_class: type[StageConfig]) -> str:
    """Commented YAML of a config class: each field's docstring above its default value."""
    import yaml

    lines = []
    for name, field in config_class.model_fields.items():
        if field.description:
            lines += [f"# {line.strip()}" for line in field.description.splitlines()]
        default = field.get_default(call_default_factory=True)
        if hasattr(default, "model_dump"):
            default = default.model_dump(mode="json")
        elif isinstance(default, Path):
            default = str(default)
        if field.is_required():
            lines.append(f"{name}:  # required")
        else:
            lines.append(yaml.safe_dump({name: default}, sort_keys=False).rstrip())
    return "\n".join(lines)


@recipes_app.callback(invoke_without_command=True)
def recipes_list(context: typer.Context) -> None:
    """List the shipped recipes: stage, model, hardware, the published figure each should reach, what it reproduces."""
    if context.invoked_subcommand is None:
        from emkit.recipes import recipe_table

        typer.echo(recipe_table())


@recipes_app.command("show")
def recipes_show(name: str = typer.Argument(..., help="Recipe name (see `emkit recipes`).")) -> None:
    """Print a recipe's YAML: its source, its catalogue entry and its settings."""
    from emkit.recipes import load_recipe

    typer.echo(load_recipe(name).path.read_text(encoding="utf-8"), nl=False)


@data_app.command("validate")
def data_validate(files: list[str] = typer.Argument(..., help="JSONL files or demo:/paper: references.")) -> None:
    """Check chat datasets line by line; report the first problem of each file."""
    from emkit.data import read_chat_dataset, resolve_dataset

    for reference in files:
        conversations = read_chat_dataset(resolve_dataset(reference))
        typer.echo(f"{reference}: {len(conversations)} conversations, valid")


@data_app.command("pull")
def data_pull(source: Path | None = typer.Option(None, "--from", help="Copy from this local folder instead."),
              quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.")) -> None:
    """Fetch the papers' training datasets and question sets (pinned commit, sha256 checked, cached)."""
    from emkit.data.pull import pull
    from emkit.paths import data_override

    folder = pull(source or data_override(), progress=not quiet)
    typer.echo(f"papers' data ready in {folder}")


def main() -> None:
    """Console entry point: run the app, turning user mistakes into one line and exit code 2."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        app()
    except EmkitError as exc:
        typer.echo(f"error: {exc.one_line()}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted: finished work is saved; rerun the same command to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
