# The two commands of the README:
#   make demo   set up (.venv from requirements.lock) and run the main job on the synthetic stand-in
#   make test   set up and run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lock clean-results

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m fersnet.demo

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -n 2 --dist worksteal tests

# Re-resolve the lock from requirements.in (needs the package registries).
lock:
	rm -rf .lockenv && $(PY) -m venv .lockenv
	.lockenv/bin/pip install --quiet -r requirements.in
	.lockenv/bin/pip freeze --exclude-editable | sort > requirements.lock
	rm -rf .lockenv
