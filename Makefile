# Two commands for a newcomer:  `make demo` (main job on the synthetic cohort)  and  `make test`.
# Both create or reuse the virtual environment in $(VENV).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU default that works on the project's machines (pip takes both from local disk there).
# GPU users: make install TORCH_SPEC="torch torchvision --index-url <PyTorch CUDA wheel index>"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= test,deploy
STAMP := $(VENV)/.hnc-petct-installed
# mamba-ssm's / causal-conv1d's own Python references (pinned sdists, interface files only) for the CPU tests
# of the CUDA dispatch; versions pinned in tests/upstream_refs.py.
UPSTREAM_REFS := $(abspath $(VENV))/upstream_refs
DEMO_DIR ?= demo
DEMO_N ?= 40

.PHONY: install test demo clean-demo browser

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	$(BIN)/python -m pip check
	@touch $@

install: $(STAMP)

$(UPSTREAM_REFS)/VERSIONS: tests/upstream_refs.py | $(STAMP)
	rm -rf $(UPSTREAM_REFS)
	$(BIN)/python tests/upstream_refs.py fetch $(UPSTREAM_REFS)

# Headless Chromium for the report-rendering test (Debian package; needs root, skipped otherwise).
browser:
	@command -v chromium >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium (Debian) for the report-rendering test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium not installed: the report-rendering test will be skipped"; fi; }

test: $(STAMP) $(UPSTREAM_REFS)/VERSIONS browser
	HNC_UPSTREAM_REFS=$(UPSTREAM_REFS) HNC_REQUIRE_UPSTREAM_REFS=1 $(BIN)/python -m pytest tests

demo: $(STAMP)
	@test -f $(DEMO_DIR)/cohort/HECKTOR_2025_Training_Task_2.csv || \
		$(BIN)/hnc-petct synth --n $(DEMO_N) --seed 0 $(DEMO_DIR)/cohort
	$(BIN)/hnc-petct run $(DEMO_DIR)/cohort $(DEMO_DIR)/out

clean-demo:
	rm -rf $(DEMO_DIR)
