# Two commands work on a fresh machine with Python 3.11, git and make:
#   make ask Q="When was the second Istanbul round?"
#   make test
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0

.PHONY: ask test test-all lint audit index serve bench clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# CPU torch first (a bare `torch` would pull a multi-GB CUDA build), then the project.
# The other packages at the exact versions of requirements.lock (tested and audited together).
$(STAMP): $(BIN)/python pyproject.toml requirements.lock
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test,milvus]' -c requirements.lock
	@touch $(STAMP)

ask: $(STAMP)
	@test -n "$(Q)" || { echo 'usage: make ask Q="When was the second Istanbul round?"'; exit 2; }
	@$(BIN)/ask "$(Q)"

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check qa tests tools
	$(BIN)/mypy qa tools

# Known vulnerabilities of the installed packages, from PyPI's advisories (tools/audit_deps.py).
audit: $(STAMP)
	$(BIN)/python tools/audit_deps.py

index: $(STAMP)
	$(BIN)/qa index build seeds/

serve: $(STAMP)
	$(BIN)/qa serve

clean:
	rm -rf $(VENV) index/CURRENT index/v-* index/.tmp-*
