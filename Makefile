# Set-up contract: `make run` and `make test` do everything on a fresh machine.
#   make run    create .venv, install (torch CPU pin first), run the main job on the default scenario
#   make test   same environment, then the whole default test suite
#   make bench  speed goals (prints ratios against references measured in the same run)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
SYSSTAMP := $(VENV)/.system-deps
IMITSTAMP := $(VENV)/.imitation
SCENARIO ?= scenarios/default.toml
OUT ?= results/default
PYTEST_ARGS ?=

.PHONY: run test install system-deps imitation bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch first, with the CPU pin, or pip pulls gigabytes of CUDA wheels.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[all]'
	touch $(STAMP)

# System packages (Debian): the Ipopt library and the AMPL solver library, from which
# .ci/build_ipopt.sh compiles the `ipopt` executable that Pyomo's reference solver uses.
# Needs root and apt-get; elsewhere it says so and the reference tests skip with a reason.
$(SYSSTAMP): .ci/build_ipopt.sh | $(PY)
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  bash .ci/build_ipopt.sh $(VENV)/bin || echo "warning: Ipopt could not be built; Pyomo reference tests will skip"; \
	else \
	  echo "note: not root or no apt-get: skipping the Ipopt build (Pyomo reference tests will skip)"; \
	fi
	touch $(SYSSTAMP)

system-deps: $(SYSSTAMP)

# imitation 1.0.1 (GAIL for provisioning/prompting) pins stable-baselines3~=2.2.1 and gymnasium~=0.29;
# a plain install would downgrade our stack, so it goes in without its dependencies (tensorboard,
# which its adversarial module imports, comes from the `prompting` extra). Afterwards `pip check`
# reports those pins and the extras we never import (datasets, optuna, sacred, seals, huggingface-sb3):
# expected, see docs/prompts.md.
$(IMITSTAMP): $(STAMP)
	$(PIP) install --quiet --no-deps imitation==1.0.1
	touch $(IMITSTAMP)

imitation: $(IMITSTAMP)

install: $(STAMP) $(SYSSTAMP) $(IMITSTAMP)

run: install
	$(VENV)/bin/incentive run $(SCENARIO) --out $(OUT)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis .ipopt-build
