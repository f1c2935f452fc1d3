# `make test`: the whole suite, from a fresh checkout (the README's second command; .ci/run calls it).
# Everything it builds or installs stays inside the checkout (.venv/, target/).

VENV := .venv
PY := $(VENV)/bin/python

.PHONY: test lint bench

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip "maturin>=1.5,<2"

test: $(PY)
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --extras test
	cargo test --workspace
	$(PY) -m pytest

lint: $(PY)
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests bench
	$(VENV)/bin/ruff format --check python tests bench

bench: $(PY)
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release --extras test
	$(PY) bench/offline.py
	$(PY) bench/live.py
	$(PY) bench/console.py
	$(PY) bench/fwctl.py
