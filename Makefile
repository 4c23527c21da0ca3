# Two commands set up a fresh machine: `make demo` and `make test` (README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl

.PHONY: install demo test test-all lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[dev]"
	touch $(STAMP)

# The main job on the embedded default: a small Push dataset and preview videos
# (resume=true: running it again keeps the data and rewrites the previews).
demo: $(STAMP)
	$(PY) scripts/collect.py env=push policy=scripted episodes=40 steps=50 workers=2 out=data/demo_push resume=true preview.episodes=16

# pytest exits 5 when it collected no test: make treats any non-zero exit as failure.
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -m "not slow and not gpu" -q

test-all: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)
	$(PY) scripts/benchmark.py envs
	$(PY) scripts/benchmark.py collect

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
