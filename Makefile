# Quick-start commands: `make repro` (set up, run the pipeline), `make test`, and `make demo`
# (the pipeline offline on synthetic data, in demo/).
VENV ?= .venv
STAMP := $(VENV)/.installed

.PHONY: repro test demo

$(STAMP): requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

repro: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" dvc repro

test: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" python -m pytest

demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" python -m scripts.demo
