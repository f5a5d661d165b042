# The two commands the README starts with: `make run` (set up + start the service) and `make test`;
# `make image` builds the service image with podman (scripts/image/build.sh; README, Docker).
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup run demo test lint image
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $@

run: setup
	$(VENV)/bin/edurank serve

demo: setup
	$(VENV)/bin/edurank demo

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q --durations=8

lint: setup
	$(VENV)/bin/ruff check .

image:
	bash scripts/image/build.sh
