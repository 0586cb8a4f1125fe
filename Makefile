# analogeq: `make demo` runs the main job, `make test` runs the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test test-all bench bench-chip clean ngspice docs

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(VENV)/bin/analogeq demo --out runs/demo

# ngspice's shared library for the SPICE tests: installed with apt-get when missing (Debian, root);
# elsewhere the target says what to install and fails.
NGSPICE_LIBS := /usr/lib/x86_64-linux-gnu/libngspice.so.0 /usr/lib/aarch64-linux-gnu/libngspice.so.0 \
	/usr/lib/libngspice.so.0 /usr/lib64/libngspice.so.0 /usr/local/lib/libngspice.so.0 \
	/opt/homebrew/lib/libngspice.dylib /usr/local/lib/libngspice.dylib
ngspice:
	@if [ -n "$$NGSPICE_LIBRARY_PATH" ] && [ -e "$$NGSPICE_LIBRARY_PATH" ]; then exit 0; fi; \
	for f in $(NGSPICE_LIBS); do [ -e "$$f" ] && exit 0; done; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "ngspice shared library missing: apt-get install -y ngspice libngspice0"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ngspice libngspice0 >/dev/null; \
	else \
		echo "error: ngspice's shared library (libngspice.so.0) is missing and cannot be installed here" >&2; \
		echo "  Debian/Ubuntu: sudo apt-get install ngspice libngspice0;  Fedora: sudo dnf install ngspice" >&2; \
		echo "  macOS: brew install ngspice;  conda: conda install -c conda-forge ngspice" >&2; \
		echo "  or set NGSPICE_LIBRARY_PATH=/path/to/libngspice.so.0" >&2; \
		exit 1; \
	fi

# tests/run_suite.py: one pytest process per test file (XLA's CPU compiler crashed late in
# single-process suites), as many at a time as there are cores, slowest first.
test: $(STAMP) ngspice
	$(PY) tests/run_suite.py -m "not slow"

test-all: $(STAMP) ngspice
	$(PY) tests/run_suite.py

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/bench_emulator.py --out benchmarks/results

bench-chip: $(STAMP)
	$(PY) benchmarks/bench_chip.py --out benchmarks/results

# docs/api.md from the docstrings (tests/test_docs.py checks it is up to date).
docs: $(STAMP)
	$(PY) docs/gen_api.py

clean:
	rm -rf runs build *.egg-info .pytest_cache
