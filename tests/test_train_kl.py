import pytest
import torch
import torch.nn.functional as F

from emkit.errors import EmkitError
from emkit.models import load_model
from emkit.train import TrainConfig, train
from emkit.train.kl import KLTerm, vocabulary_size
from emkit.train.solutions import make_solution


def config(tiny_model, chat_file, out, *extra):
    return TrainConfig.load(overrides=[f"model={tiny_model}", f"datasets=[{chat_file}]", f"output_dir={out}",
                                       "batch_size=4", "grad_accum=2", "save_every=2", "learning_rate=5e-3",
                                       "dtype=float32", "kl.weight=1", f"kl.dataset={chat_file}", "kl.batch_size=3",
                                       *extra])


def kl_setup(tiny_model, chat_file, tmp_path, *extra):
    settings = config(tiny_model, chat_file, tmp_path / "run", *extra)
    loaded = load_model(str(tiny_model), dtype="float32")
    torch.manual_seed(0)
    solution = make_solution(loaded.model, settings)
    return solution, KLTerm.build(settings, loaded.tokenizer, solution, torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("preset", ["rank1-single", "steering-vector"])
def test_kl_is_zero_at_initialisation_and_grows_as_the_weights_move(tiny_model, chat_file, tmp_path, preset):
    solution, kl = kl_setup(tiny_model, chat_file, tmp_path, f"preset={preset}")
    assert kl.divergence_sum(solution.model, 0).item() == 0.0
    direction = [torch.randn_like(tensor) for tensor in solution.update_tensors()]
    values = []
    for size in (0.05, 0.1, 0.2):
        with torch.no_grad():
            for tensor, step in zip(solution.update_tensors(), direction, strict=True):
                tensor.copy_(size * step)
        values.append(sum(kl.divergence_sum(solution.model, index).item() for index in range(len(kl.batches))))
    assert 0 < values[0] < values[1] < values[2]


def test_cached_and_live_reference_give_the_same_kl(tiny_model, chat_file, tmp_path):
    solution, cached = kl_setup(tiny_model, chat_file, tmp_path)
    _, live = kl_setup(tiny_model, chat_file, tmp_path, "kl.cache_mb=0")
    assert cached.cache is not None and live.cache is None
    with torch.no_grad():
        solution.update_tensors()[0].normal_()
    model = solution.model
    for index in range(4):
        assert cached.divergence_sum(model, index).item() == pytest.approx(live.divergence_sum(model, index).item())


def test_kl_is_the_papers_term_times_the_vocabulary_size(tiny_model, chat_file, tmp_path):
    solution, kl = kl_setup(tiny_model, chat_file, tmp_path)
    model = solution.model
    with torch.no_grad():
        solution.update_tensors()[0].normal_()
        batch = kl.batches[kl.order(0)]
        current = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        with model.disable_adapter():
            base = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    # The papers' trainer: element-wise F.kl_div over [batch, position, vocab], masked sum / mask sum.
    elementwise = F.kl_div(current.log_softmax(-1), base.log_softmax(-1), log_target=True, reduction="none")
    mask = batch["attention_mask"][:, 1:].unsqueeze(-1).expand_as(elementwise)
    theirs = (elementwise * mask).sum() / mask.sum()
    ours = kl.divergence_sum(model, 0) / kl.tokens(0)
    assert ours.item() == pytest.approx(theirs.item() * vocabulary_size(model), rel=1e-4)


def test_training_logs_kl_from_zero_and_a_larger_weight_stays_closer_to_base(tiny_model, chat_file, tmp_path):
    weak = train(config(tiny_model, chat_file, tmp_path / "weak", "max_steps=6", "kl.weight=0.001"),
                 show_progress=False)
    strong = train(config(tiny_model, chat_file, tmp_path / "strong", "max_steps=6", "kl.weight=100"),
                   show_progress=False)
    assert weak.history[0]["kl"] == 0.0 and strong.history[0]["kl"] == 0.0
    assert weak.history[-1]["kl"] > 0
    assert strong.history[-1]["kl"] < weak.history[-1]["kl"]


def test_full_finetuning_keeps_a_frozen_reference_that_matches_the_cache(tiny_model, chat_file, tmp_path):
    cached = train(config(tiny_model, chat_file, tmp_path / "cached", "max_steps=3", "preset=full"),
                   show_progress=False)
    live = train(config(tiny_model, chat_file, tmp_path / "live", "max_steps=3", "preset=full", "kl.cache_mb=0"),
                 show_progress=False)
    assert cached.history[0]["kl"] == 0.0 < cached.history[-1]["kl"]
    assert [r["kl"] for r in live.history] == pytest.approx([r["kl"] for r in cached.history])


def test_kl_positions_can_be_restricted_to_assistant_tokens(tiny_model, chat_file, tmp_path):
    _, everything = kl_setup(tiny_model, chat_file, tmp_path)
    _, answers = kl_setup(tiny_model, chat_file, tmp_path, "kl.positions=assistant")
    assert 0 < sum(answers.counts) < sum(everything.counts)


def test_missing_kl_dataset_fails_before_anything_is_written(tiny_model, chat_file, tmp_path):
    with pytest.raises(EmkitError, match="dataset file not found"):
        train(config(tiny_model, chat_file, tmp_path / "run", f"kl.dataset={tmp_path / 'missing.jsonl'}"),
              show_progress=False)
    assert not (tmp_path / "run").exists()
