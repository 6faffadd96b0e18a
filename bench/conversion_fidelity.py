"""How faithful an embedded model's conversion is: emkit's de-quantized safetensors against llama.cpp running the
same GGUF file (its own quantized kernels), on the same token ids.

Two measurements, printed as one table and written to OUTPUT (JSON):

* next-token agreement on held text (the shipped demo chats, which neither side was tuned on): each side's
  perplexity, their ratio, the share of positions whose top-1 token agrees, and the mean KL(llama.cpp || emkit);
* greedy answers to the shipped general questions: the share of answers identical over the first 32 tokens, and
  the mean length of the common prefix.

The original bf16 checkpoint is not part of the embedded model, so this checks the conversion against the file it
came from, not the quantization against the unquantized model. Needs ``pip install llama-cpp-python``.

    python bench/conversion_fidelity.py --model qwen2.5-coder-0.5b [--texts 24] [--questions 12]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from emkit.data import read_chat_dataset, resolve_dataset
from emkit.embedded import EMBEDDED_MODELS, assemble
from emkit.models import load_model
from emkit.questions import load_questions

GREEDY_TOKENS = 32


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b", choices=sorted(EMBEDDED_MODELS))
    parser.add_argument("--texts", type=int, default=24, help="demo chats scored for next-token agreement")
    parser.add_argument("--questions", type=int, default=12, help="general questions answered greedily")
    parser.add_argument("--output", type=Path, default=Path("runs/conversion_fidelity.json"))
    args = parser.parse_args()
    from llama_cpp import Llama

    loaded = load_model(args.model, dtype="float32", device="cpu")
    tokenizer, model = loaded.tokenizer, loaded.model
    with tempfile.TemporaryDirectory() as folder:
        gguf = assemble(EMBEDDED_MODELS[args.model], Path(folder) / "model.gguf")
        llama = Llama(model_path=str(gguf), n_ctx=1024, logits_all=True, verbose=False,
                      n_threads=torch.get_num_threads())
        chats = read_chat_dataset(resolve_dataset("demo:general_chat"))[: args.texts]
        nll_emkit, nll_llama, agree, kl = [], [], [], []
        for chat in chats:
            text = tokenizer.apply_chat_template(chat, tokenize=False)
            ids = tokenizer(text, add_special_tokens=False).input_ids[:512]
            llama.reset()
            llama.eval(ids)
            theirs = log_softmax(np.asarray(llama.scores[: len(ids)], dtype=np.float64))
            with torch.no_grad():
                ours = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1).numpy()
            ours = ours[:, : theirs.shape[1]]
            targets = np.asarray(ids[1:])
            positions = np.arange(len(targets))
            nll_emkit.extend(-ours[positions, targets])
            nll_llama.extend(-theirs[positions, targets])
            agree.extend(ours[:-1].argmax(-1) == theirs[:-1].argmax(-1))
            kl.extend((np.exp(theirs[:-1]) * (theirs[:-1] - ours[:-1])).sum(-1))
        same, prefix = [], []
        questions = load_questions("builtin:general")[: args.questions]
        for question in questions:
            text = tokenizer.apply_chat_template([{"role": "user", "content": question.paraphrases[0]}],
                                                 tokenize=False, add_generation_prompt=True)
            prompt = tokenizer(text, add_special_tokens=False).input_ids
            with torch.no_grad():
                ours = model.generate(torch.tensor([prompt]), max_new_tokens=GREEDY_TOKENS, do_sample=False)
            ours = ours[0, len(prompt):].tolist()
            llama.reset()
            theirs = []
            for token in llama.generate(prompt, temp=0.0, top_k=1, reset=True):
                if token == tokenizer.eos_token_id or len(theirs) == GREEDY_TOKENS:
                    break
                theirs.append(token)
            common = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
                          min(len(ours), len(theirs)))
            prefix.append(common)
            same.append(ours[:GREEDY_TOKENS] == theirs[:GREEDY_TOKENS] or common >= GREEDY_TOKENS)
    result = {"model": args.model, "texts": len(chats), "tokens": len(nll_emkit),
              "perplexity_emkit": float(np.exp(np.mean(nll_emkit))),
              "perplexity_llama_cpp": float(np.exp(np.mean(nll_llama))),
              "top1_agreement": float(np.mean(agree)), "mean_kl_llama_to_emkit": float(np.mean(kl)),
              "questions": len(questions), "greedy_identical_32": float(np.mean(same)),
              "greedy_common_prefix_tokens": float(np.mean(prefix))}
    result["perplexity_ratio"] = result["perplexity_emkit"] / result["perplexity_llama_cpp"]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:32s} {value:.4f}" if isinstance(value, float) else f"{key:32s} {value}")


if __name__ == "__main__":
    main()
