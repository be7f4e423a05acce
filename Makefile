# All set-up happens here: `make demo` and `make test` work on a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
STAMP  := $(VENV)/.mtrec-installed
# Where the CPU build of torch comes from. Empty: the default index (this machine's pip
# config serves a local CPU wheel). Elsewhere: make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: install demo test lint clean

install: $(STAMP)

# Re-runs only when the package metadata changes; a second `make` reuses .venv.
# The web-page test drives Debian's chromium: installed here when apt-get can (as root);
# elsewhere a warning, and tests/serve/test_web.py skips.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	test -x /usr/bin/chromium || { command -v apt-get >/dev/null && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
	  echo "warning: /usr/bin/chromium not installed; the web-page test will skip" >&2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mtrec demo

lint: $(STAMP)
	$(BIN)/ruff check mtrec tests benchmarks
	$(BIN)/mypy

# pytest exits 5 when it collected nothing: that is a failure here, not a pass.
test: $(STAMP) lint
	$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) .mtrec .pytest_cache .mypy_cache .ruff_cache
