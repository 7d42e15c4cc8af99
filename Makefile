# Quick-start commands: `make repro` (set up, run the pipeline), `make test`, and `make demo`
# (the pipeline offline on synthetic data, in demo/). `make lock` refreshes requirements.lock.
VENV ?= .venv
STAMP := $(VENV)/.installed
LOCK_HEADER := \# Exact versions the tests pass with (CPython 3.11, Linux x86-64): everything that\n\# `pip install .[dev]` installs. Used by `make` and CI. Refresh from the ranges in pyproject.toml: make lock

.PHONY: repro test demo lock remote

# The locked versions, then the project itself (editable, with the locked setuptools: `medcls` on PATH).
$(STAMP): requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.lock
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

repro: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" dvc repro

test: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" python -m pytest -n auto --dist loadfile  # a test file per core

demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" python -m scripts.demo

# The newest versions within pyproject.toml's ranges, resolved in a throw-away virtual environment.
lock:
	venv=$$(mktemp -d) && python3 -m venv $$venv && $$venv/bin/pip install --quiet ".[dev]" && { printf '$(LOCK_HEADER)\n'; $$venv/bin/pip freeze --all --exclude pip --exclude medcls; } > requirements.lock; status=$$?; rm -rf $$venv; exit $$status

# The default DVC remote, where `dvc push` uploads data and models and a clone's `dvc pull` gets
# them (docs/remote.md: S3, GCS, SSH, a folder): make remote URL=s3://bucket/medcls
remote: $(STAMP)
	@test -n "$(URL)" || { echo "error: give the remote's URL: make remote URL=s3://bucket/path (see docs/remote.md)" >&2; exit 1; }
	$(VENV)/bin/dvc remote add --default --force storage "$(URL)"
