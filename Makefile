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

verify: $(BIN)/.installed  ## The main job: every harness suite against the embedded mock, offline
	$(BIN)/hostedai-harness verify --report-dir reports $(ARGS)

run: $(BIN)/.installed  ## Start the mock HostedAI server on 127.0.0.1:8000
	$(BIN)/hostedai-mock $(ARGS)

service: $(BIN)/.installed  ## Start the Harpoon /v2/process service on 127.0.0.1:8080 (HOSTED_AI_API_KEY set)
	$(BIN)/harpoon-service $(ARGS)

load: $(BIN)/.installed  ## The load suite (locust, SLO gates) against the embedded mock; ARGS="--target URL" for another
	$(BIN)/hostedai-harness load --report-dir reports $(ARGS)

$(TOOLS)/.installed: tools/package.json tools/package-lock.json
	mkdir -p $(TOOLS)
	cp tools/package.json tools/package-lock.json $(TOOLS)/
	cd $(TOOLS) && npm ci --cache .npm-cache --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

tools: $(TOOLS)/.installed  ## Install the pinned OpenAPI tools into .tools/ (make test does it first)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

test: lint typecheck $(TOOLS)/.installed  ## Lint, type-check and run the whole test suite
	$(BIN)/pytest -q $(ARGS)

bench: $(BIN)/.installed  ## Run the benchmarks and rewrite docs/benchmarks.md
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache .hypothesis reports
