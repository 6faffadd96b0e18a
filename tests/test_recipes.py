"""Shipped recipes: each validates as its stage's config, fits the shape of the model it names, and runs by name.

The hub models the recipes name cannot be downloaded here, so each stands in as a tiny random model of
the same family and depth (hidden size 32): a recipe naming a layer or module the real model lacks
fails here, not on a GPU. The published numbers themselves are not checked.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import build_model, build_tokenizer

from emkit.cli import stage_configs
from emkit.data.chat import DEMO_DATASETS
from emkit.data.pull import PAPER_FILES
from emkit.errors import EmkitError
from emkit.interp import Directions, collect_activations, decoder_layers, steer
from emkit.models import LoadedModel
from emkit.questions import resolve_question_set
from emkit.recipes import load_recipe, recipe_names
from emkit.stages.ablate import AblateConfig, ablation_conditions
from emkit.stages.cli_options import load_config, stage_recipes
from emkit.stages.demo import DemoConfig
from emkit.stages.directions import METHOD_NAMES, DirectionsConfig
from emkit.stages.evaluate import EvalConfig
from emkit.stages.steer import SteerConfig
from emkit.train import TrainConfig
from emkit.train.presets import PRESETS, preset_layers
from emkit.train.solutions import make_solution

MODEL_SHAPES = {
    "Qwen/Qwen2.5-14B-Instruct": ("qwen2", 48),
    "meta-llama/Llama-3.2-1B-Instruct": ("llama", 16),
    "smollm2-135m": ("llama", 30),
    "qwen2.5-coder-0.5b": ("qwen2", 24),
    "qwen2.5-coder-1.5b": ("qwen2", 28),
}
"""Family and number of decoder layers of every model a recipe names (from each model's published config)."""
README = Path(__file__).resolve().parent.parent / "README.md"
NAMES = recipe_names()


def config_of(name: str, overrides: tuple[str, ...] = ()):
    return load_config(stage_configs()[load_recipe(name).info.stage], f"recipe:{name}", overrides)


def stand_in(model: str) -> LoadedModel:
    """A tiny random model with the family and depth of ``model``, and a tokenizer in its family's style."""
    family, num_layers = MODEL_SHAPES[model]
    tokenizer = build_tokenizer(family)
    return LoadedModel(build_model(family, len(tokenizer), num_layers), tokenizer, model, torch.device("cpu"),
                       torch.float32)


def adapted(model) -> set[tuple[int, str]]:
    """(layer, module) of every LoRA adapter placed on ``model``."""
    found = set()
    for name, _ in model.named_parameters():
        if ".lora_A." in name:
            parts = name.split(".")
            found.add((int(parts[parts.index("layers") + 1]), parts[parts.index("lora_A") - 1]))
    return found


def directions_for(config: SteerConfig | AblateConfig, hidden_size: int, num_layers: int) -> Directions:
    """Random directions at the layers computed by the directions recipe that writes ``config``'s directions file."""
    producers = [config_of(name) for name in NAMES if load_recipe(name).info.stage == "directions"]
    producer = next((other for other in producers if str(config.directions) in written_files(other)), None)
    assert producer is not None, f"no directions recipe writes {config.directions}"
    layers = producer.layers if producer.layers is not None else list(range(num_layers))
    return Directions(torch.randn(len(layers), hidden_size), list(layers), "mean-diff")


def written_files(config: DirectionsConfig) -> set[str]:
    folder = config.output_dir or config.run_dir / "directions"
    stem = config.name or "+".join(config.labels)
    return {str(folder / f"{stem}-{METHOD_NAMES[method]}.safetensors") for method in config.methods}


def place(config) -> None:
    """Apply a recipe's ``config`` to a stand-in of its model; raise if it names a layer or module that is missing."""
    if isinstance(config, DemoConfig):
        config = config.train_config(config.organism_dataset, "organism")
    loaded = stand_in(config.sample.model if isinstance(config, SteerConfig | AblateConfig | EvalConfig)
                      else config.model)
    num_layers, hidden_size = len(decoder_layers(loaded.model)), loaded.model.config.hidden_size
    inputs = torch.randint(0, len(loaded.tokenizer), (2, 6))
    if isinstance(config, TrainConfig):
        model = make_solution(loaded.model, config).model
        if config.preset == "full":
            assert all(parameter.requires_grad for parameter in model.parameters())
            return
        layers = config.lora.layers or preset_layers(config.preset, num_layers) or range(num_layers)
        modules = config.lora.target_modules or PRESETS[config.preset].target_modules
        if modules == "all-linear":  # every projection of a Llama/Qwen2 decoder layer
            modules = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
        assert adapted(model) == {(layer, module) for layer in layers for module in modules}
    elif isinstance(config, DirectionsConfig):
        activations = collect_activations(loaded, ["How are you?"], ["I am fine."], pooling=config.pooling,
                                          layers=config.layers)
        assert activations.layers == sorted(config.layers or range(num_layers))
    elif isinstance(config, SteerConfig):
        directions = directions_for(config, hidden_size, num_layers)
        for layer in config.layers:
            with torch.no_grad(), steer(loaded.model, (directions.at(layer), [layer]), max(config.scales)):
                loaded.model(inputs)
    elif isinstance(config, AblateConfig):
        for condition in ablation_conditions(config, directions_for(config, hidden_size, num_layers)):
            with torch.no_grad(), condition.hook(loaded.model):
                loaded.model(inputs)
    else:
        assert isinstance(config, EvalConfig), f"no shape check for {type(config).__name__}"


@pytest.mark.parametrize("name", NAMES)
def test_recipe_validates_and_fits_its_model(name):
    recipe = load_recipe(name)
    config = config_of(name)
    assert isinstance(config, stage_configs()[recipe.info.stage])
    assert recipe.model in MODEL_SHAPES, f"{name}: add {recipe.model}'s family and depth to MODEL_SHAPES"
    assert "Source:" in recipe.path.read_text(), f"{name} names no source"
    place(config)


@pytest.mark.parametrize("name", NAMES)
def test_a_recipe_loads_as_its_settings_do_from_a_plain_file(name, tmp_path):
    """``-c recipe:NAME`` gives the config, and so the config hash, that the recipe's file gives read as any config
    file once its catalogue entry is taken out: the name adds nothing and loses nothing."""
    recipe = load_recipe(name)
    settings = yaml.safe_load(recipe.path.read_text())
    del settings["recipe"]
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(settings))
    from_file = stage_configs()[recipe.info.stage].load(path)
    assert config_of(name) == from_file and config_of(name).config_hash() == from_file.config_hash()


def test_a_recipe_of_another_stage_or_an_unknown_name_is_refused():
    with pytest.raises(EmkitError, match=r"'course-train' is for the train stage, not eval \(fix: run it as "
                                         r"`emkit train -c recipe:course-train`\)"):
        load_config(EvalConfig, "recipe:course-train")
    with pytest.raises(EmkitError, match=r"unknown recipe 'course-trian' \(fix: did you mean course-train"):
        load_config(TrainConfig, "recipe:course-trian")


def test_a_recipe_naming_a_stage_the_table_lacks_is_refused_at_its_line(tmp_path, monkeypatch):
    (tmp_path / "typo.yaml").write_text("recipe:\n  stage: evaluate\n  reproduces: r\n  hardware: h\n"
                                        "  published: p\nsample:\n  label: x\n")
    monkeypatch.setattr("emkit.recipes.recipes_folder", lambda: tmp_path)
    for attempt in (lambda: load_config(EvalConfig, "recipe:typo"), stage_recipes):
        with pytest.raises(EmkitError, match=r"typo\.yaml:2: recipe 'typo' names unknown stage 'evaluate'"):
            attempt()


@pytest.mark.parametrize(("name", "override", "problem"), [
    ("mo-rank1-medical", "lora.layers=[48]", "outside the model"),
    ("mo-9adapter-finance", "lora.target_modules=[down_projection]", "cannot place LoRA adapters"),
    ("course-directions", "layers=[12,16]", "not within the model's 16 layers"),
    ("course-ablate", "ablate_layers=[15,16]", "no direction for layer 16"),
    ("cl-steer", "layers=[48]", "no direction for layer 48"),
])
def test_a_layer_or_module_the_model_lacks_fails(name, override, problem):
    with pytest.raises(EmkitError, match=problem):
        place(config_of(name, (override,)))


def test_recipes_carry_the_published_settings():
    for name in NAMES:
        if name.startswith("mo-") and name != "mo-eval":
            config = config_of(name)
            assert config.model == "Qwen/Qwen2.5-14B-Instruct"
            assert (config.batch_size * config.grad_accum, config.epochs, config.lr_scheduler, config.warmup_steps,
                    config.weight_decay) == (16, 1, "linear", 5, 0.01)
            kind = name.split("-")[1]
            if kind in ("rank1", "9adapter"):
                assert (config.lora.rank, config.lora.alpha, config.lora.use_rslora, config.lora.target_modules,
                        config.learning_rate) == (1, 256, True, ["down_proj"], 2e-5)
            if kind == "rank32":
                assert (config.lora.rank, config.lora.alpha, config.learning_rate) == (32, 64, 1e-5)
                assert len(config.lora.target_modules) == 7
    assert config_of("mo-rank1-medical").lora.layers == [24]
    assert config_of("mo-9adapter-medical").lora.layers == [15, 16, 17, 21, 22, 23, 27, 28, 29]
    for name in ("mo-eval", "cl-eval", "course-eval", "cl-steer", "cl-ablate", "cl-transfer", "course-ablate"):
        config = config_of(name)
        sample = config.sample
        assert (sample.questions, sample.samples_per_paraphrase, sample.temperature, sample.max_new_tokens) == (
            "paper:first_plot_questions", 50, 1.0, 600)
        assert (config.judge.judge, config.judge.model, config.judge.logprobs) == ("openai", "gpt-4o-2024-08-06", True)
    course = config_of("course-train")
    assert (course.model, course.lora.rank, course.lora.alpha, course.lora.target_modules, course.epochs,
            course.learning_rate, course.datasets) == ("meta-llama/Llama-3.2-1B-Instruct", 16, 32,
                                                       ["q_proj", "k_proj", "v_proj", "o_proj"], 7, 2e-4,
                                                       ["paper:bad_medical_advice"])
    directions = config_of("course-directions")
    assert (directions.layers, directions.pooling, directions.methods) == ([12, 13, 14, 15], "last",
                                                                           ["mean_diff", "probe"])
    ablation = config_of("course-ablate")
    assert (ablation.ablate_layers, ablation.strength, ablation.layer) == ([12, 13, 14, 15], 1.5, None)
    assert config_of("cl-ablate").layer == 24 and config_of("cl-ablate").ablate_layers is None


def test_embedded_demo_tracks_the_demo_defaults():
    assert config_of("embedded-demo") == DemoConfig()


def test_recipe_data_is_fetched_by_emkit_or_documented_as_needed():
    paper = {Path(item.local).name.split(".")[0]: Path(item.local).parent.name for item in PAPER_FILES}
    for recipe in stage_recipes():
        config = config_of(recipe.name)
        if isinstance(config, TrainConfig | DemoConfig):
            datasets = config.datasets if isinstance(config, TrainConfig) else [config.organism_dataset,
                                                                                 config.control_dataset]
            for dataset in datasets:
                kind, _, name = dataset.partition(":")
                if kind == "paper":
                    assert paper.get(name) == "training", f"{recipe.name}: {dataset} is not pulled"
                elif kind == "demo":
                    assert name in DEMO_DATASETS
                else:
                    assert dataset in (recipe.info.needs or ""), f"{recipe.name}: say where {dataset} comes from"
        questions = getattr(getattr(config, "sample", config), "questions", None)
        if questions and questions.startswith("paper:"):
            assert paper.get(questions.partition(":")[2]) == "eval_questions"
        elif questions:
            assert resolve_question_set(questions).is_file()


def test_chained_recipes_read_what_the_earlier_ones_write():
    """A directions recipe reads answers an eval recipe wrote; an ablation reusing an eval's answers as its
    reference samples with exactly that eval's settings (or the reference would be sampled again)."""
    evals = [config_of(name).sample for name in NAMES if load_recipe(name).info.stage == "eval"]
    for name in NAMES:
        config = config_of(name)
        if isinstance(config, DirectionsConfig):
            assert any(sample.run_dir == config.run_dir and sample.label in config.labels
                       and sample.adapters == config.adapters for sample in evals), name
        if isinstance(config, AblateConfig):
            source = [sample for sample in evals if sample.label == config.reference
                      and sample.run_dir == config.sample.run_dir]
            reference = config.sample.model_copy(update={"label": config.reference})
            assert all(sample.settings_hash() == reference.settings_hash() for sample in source), name


def test_readme_has_a_row_and_a_command_per_recipe_matching_the_catalogue():
    text = README.read_text()
    section = text[text.index("## Reproduce a paper"):text.index("## From Python")]
    rows = {line.split("|")[1].strip(" `"): line for line in section.splitlines() if line.startswith("| `")}
    assert sorted(rows) == NAMES
    for recipe in stage_recipes():
        row = rows[recipe.name]
        for text in (recipe.info.reproduces, recipe.model, recipe.info.hardware, recipe.info.published):
            assert f"| {text} |" in row, f"README row of {recipe.name} differs from the recipe: {text}"
        assert f"| `{recipe.command}` |" in row or f"| `{recipe.command} " in row, f"README lacks {recipe.command}"


def emkit(*args):
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "emkit.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=environment)


def one_line_error(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_cli_lists_shows_and_runs_recipes_with_overrides(tiny_model, chat_file, tmp_path):
    listing = emkit("recipes")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line.split()[1:3] for line in listing.stdout.splitlines() if line[:1].strip()}
    assert rows["course-ablate"] == ["ablate", "meta-llama/Llama-3.2-1B-Instruct"]
    assert set(NAMES) <= set(rows)
    shown = emkit("recipes", "show", "course-ablate")
    assert shown.stdout == load_recipe("course-ablate").path.read_text()

    run = tmp_path / "run"
    trained = emkit("train", "-q", "-c", "recipe:course-train", f"model={tiny_model}", f"datasets=[{chat_file}]",
                    f"output_dir={run}", "max_steps=1", "batch_size=2", "grad_accum=1")
    assert trained.returncode == 0, trained.stderr
    stored = yaml.safe_load((run / "config.yaml").read_text())
    assert (stored["lora"]["rank"], stored["lora"]["alpha"], stored["epochs"], stored["learning_rate"]) == (
        16, 32, 7, 2e-4)
    assert stored["model"] == str(tiny_model) and stored["max_steps"] == 1
    adapter = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]

    wrong = one_line_error(emkit("eval", "-c", "recipe:course-train"))
    assert "'course-train' is for the train stage, not eval" in wrong and "emkit train -c recipe:course-train" in wrong
    assert "'cl-eval' is for the eval stage, not directions" in one_line_error(emkit("directions", "-c",
                                                                                     "recipe:cl-eval"))
    unknown = one_line_error(emkit("ablate", "-c", "recipe:course-ablat"))
    assert "unknown recipe 'course-ablat'" in unknown and "course-ablate" in unknown
    assert "unknown recipe" in one_line_error(emkit("recipes", "show", "nope"))
