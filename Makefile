# The two commands of the README: `make verify` (the main job) and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The OpenAPI tools (Redocly, Spectral, Prism; pinned in tools/package.json and its lock file), installed
# with npm into a directory this Makefile owns, npm's download cache included.
TOOLS := .tools

.PHONY: verify run service load test lint typecheck tools bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

verify: $(BIN)/.installed  ## The main job: every harness suite against a mock process, offline
	$(BIN)/hostedai-harness verify --report-dir reports $(ARGS)

run: $(BIN)/.installed  ## Start the mock HostedAI server on 127.0.0.1:8000
	$(BIN)/hostedai-mock $(ARGS)

service: $(BIN)/.installed  ## Start the Harpoon /v2/process service on 127.0.0.1:8080 (HOSTED_AI_API_KEY set)
	$(BIN)/harpoon-service $(ARGS)

load: $(BIN)/.installed  ## The load suite (locust, SLO gates) against a mock process; ARGS="--target URL" for another
	$(BIN)/hostedai-harness load --report-dir reports $(ARGS)

$(TOOLS)/.installed: tools/package.json tools/package-lock.json
	mkdir -p $(TOOLS)
	cp tools/package.json tools/package-lock.json $(TOOLS)/
	cd $(TOOLS) && npm ci --cache .npm-cache --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

# Jenkins xUnit's JUnit schema (junit-10.xsd, MIT), as pytest's source distribution ships it for its own
# tests: what tests/harness/test_junit_schema.py validates the harness's junit.xml against.
$(TOOLS)/junit-10.xsd: $(BIN)/.installed
	mkdir -p $(TOOLS)/sdist
	$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: pytest==9.2.0 -d $(TOOLS)/sdist
	tar -xzf $(TOOLS)/sdist/pytest-9.2.0.tar.gz -C $(TOOLS) --strip-components=3 pytest-9.2.0/testing/example_scripts/junit-10.xsd
	echo "a1a816f58d1bf95ebabf371994df0b9246dee66ea9572fbec4f9296f1b2c0ff6  $@" | sha256sum --check --quiet
	touch $@

# A plain `pip install .` into a virtualenv of its own (not editable, no dev extra), which
# tests/deploy/test_fresh_install.py runs the three commands and the docs' examples from, outside the
# checkout; pytest-asyncio beside it, put on PYTHONPATH only for the strict-mode run.
SHIPPED := pyproject.toml README.md $(shell find mock_server harness contracts configs loadtests -type f -not -path '*/__pycache__/*')
$(TOOLS)/fresh/.installed: $(SHIPPED)
	rm -rf $(TOOLS)/fresh $(TOOLS)/fresh-asyncio
	$(PYTHON) -m venv $(TOOLS)/fresh
	$(TOOLS)/fresh/bin/python -m pip install --quiet --disable-pip-version-check .
	$(TOOLS)/fresh/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
		--target $(TOOLS)/fresh-asyncio pytest-asyncio==1.5.0
	touch $@

tools: $(TOOLS)/.installed $(TOOLS)/junit-10.xsd $(TOOLS)/fresh/.installed  ## Install the pinned OpenAPI tools and schemas into .tools/ (make test does)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

test: lint typecheck tools  ## Lint, type-check and run the whole test suite (4 workers; ARGS="-n 0" for one)
	$(BIN)/pytest -q -n 4 $(ARGS)

bench: $(BIN)/.installed  ## Run the benchmarks and rewrite docs/benchmarks.md and docs/profile.md
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.profile

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache .hypothesis reports
