# The two commands of the README. Both work on a fresh machine: they create .venv and install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test demo bench

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ".[train,dev,plots]"
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest

demo: $(VENV)/.installed
	$(VENV)/bin/evalsuite demo

bench: $(VENV)/.installed
	$(PY) scripts/bench_judge_throughput.py
	$(PY) scripts/bench_stats.py
	$(PY) scripts/bench_hf_generation.py
