# `make test`: the whole suite, from a fresh checkout (the README's second command; .ci/run calls it).
# Everything it builds or installs stays inside the checkout (.venv/, target/). The engine is built once,
# as the release wheel users get; the suite runs against that wheel, and also installs it into a venv
# with no Rust toolchain (tests/test_wheel.py).

VENV := .venv
PY := $(VENV)/bin/python
WHEELS := target/wheels
# maturin finds zig as `python3 -m ziglang`, through the venv's python on PATH.
VENV_PATH := PATH="$(abspath $(VENV))/bin:$$PATH"

.PHONY: test wheel lint bench

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip "maturin>=1.5,<2" "ziglang>=0.13,<0.14"

# The wheel links against glibc 2.17 (manylinux2014: RHEL 7 and later, Ubuntu 14.04 and later) with
# zig as the linker, whatever glibc this machine has; tests/test_wheel.py checks the tag with auditwheel.
wheel: $(PY)
	rm -f $(WHEELS)/pcapdump-*.whl
	$(VENV_PATH) $(VENV)/bin/maturin build --release --zig --compatibility manylinux2014 --out $(WHEELS)
	$(PY) -m pip install --quiet --force-reinstall --no-deps $(WHEELS)/pcapdump-*.whl
	$(PY) -m pip install --quiet "$$(ls $(WHEELS)/pcapdump-*.whl)[test]"

test: wheel
	cargo test --workspace
	PCAPDUMP_WHEEL="$$(ls $(WHEELS)/pcapdump-*.whl)" $(PY) -m pytest

lint: wheel
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests bench
	$(VENV)/bin/ruff format --check python tests bench
	$(VENV)/bin/mypy --strict python/pcapdump
	$(PY) -m mypy.stubtest pcapdump._core

bench: wheel
	$(PY) bench/offline.py
	$(PY) bench/live.py
	$(PY) bench/console.py
	$(PY) bench/fwctl.py
	$(VENV_PATH) $(PY) bench/write.py
