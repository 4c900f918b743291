# The commands of the README:
#   make demo            set up (.venv from requirements.lock) and run the whole pipeline on the synthetic stand-in
#   make test            set up and run the test suite
#   make venv TORCH=cpu  set up with a CPU-only torch (no CUDA libraries), for a machine without an NVIDIA GPU
PY ?= python3
# the oldest Python the pins support (pyproject's requires-python)
PY_MIN := 3.11
# cuda: the lock as it is (PyPI's torch is a CUDA build, ~6.5 GB of venv); cpu: CPU-only torch, no CUDA
# libraries, from PyTorch's own index (download.pytorch.org). Remembered in .venv/.torch, so a later
# re-install (e.g. after the lock changed) keeps the choice. Not given and not remembered: cuda, the
# lock as pinned, which installs wherever PyPI is reachable; on a machine without an NVIDIA driver (no
# nvidia-smi on PATH) make says how to take the smaller CPU-only build instead.
TORCH_DETECTED := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo gpu || echo none)
TORCH ?= $(shell cat .venv/.torch 2>/dev/null || echo cuda)
ifneq ($(filter command line environment,$(origin TORCH)),)
TORCH_WHY := as asked
else ifneq ($(wildcard .venv/.torch),)
TORCH_WHY := as installed before, in .venv/.torch
else ifeq ($(TORCH_DETECTED),none)
TORCH_WHY := the lock as pinned; no NVIDIA GPU found: rm -rf .venv && make venv TORCH=cpu installs the CPU-only build instead
else
TORCH_WHY := the lock as pinned; an NVIDIA GPU found (nvidia-smi)
endif
CPU_INDEX := https://download.pytorch.org/whl/cpu
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch and torchvision as pinned in the lock; torchvision must match torch and come from the same index
TORCH_PINS = $(shell grep -E '^(torch|torchvision)==' requirements.lock)
# what a CPU-only install leaves out of the lock: the torch pair (installed from CPU_INDEX) and CUDA
CUDA_ONLY := ^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)==

.PHONY: venv demo test lock check-python

# A clear message instead of a failed install when $(PY) is missing or older than PY_MIN.
CHECK_PYTHON = command -v $(PY) >/dev/null 2>&1 || { echo "error: $(PY) not found; fersnet-bench needs Python $(PY_MIN) or newer (give one with make PY=/path/to/python3)" >&2; exit 1; }; \
	$(PY) -c 'import sys; need = tuple(int(x) for x in "$(PY_MIN)".split(".")); sys.exit(0 if sys.version_info[:2] >= need else "error: fersnet-bench needs Python $(PY_MIN) or newer; $(PY) is Python %d.%d (give another with make PY=/path/to/python3)" % sys.version_info[:2])'

check-python:
	@$(CHECK_PYTHON)

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(CHECK_PYTHON)
	@echo "make venv: the $(TORCH) build of torch ($(TORCH_WHY))"
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
ifeq ($(TORCH),cpu)
	$(BIN)/pip install --quiet --index-url $(CPU_INDEX) $(TORCH_PINS)
	grep -vE '$(CUDA_ONLY)' requirements.lock > $(VENV)/requirements-cpu.txt
	$(BIN)/pip install --quiet -r $(VENV)/requirements-cpu.txt
else
	$(BIN)/pip install --quiet -r requirements.lock
endif
	$(BIN)/pip install --quiet --no-deps -e .
	echo $(TORCH) > $(VENV)/.torch
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m fersnet.demo

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -n 2 --dist load --maxschedchunk 1 tests

# Re-resolve the lock from requirements.in (needs the package registries).
lock:
	rm -rf .lockenv && $(PY) -m venv .lockenv
	.lockenv/bin/pip install --quiet -r requirements.in
	.lockenv/bin/pip freeze --exclude-editable | sort > requirements.lock
	rm -rf .lockenv
