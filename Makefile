# proofmarket developer loop. Every target installs what it needs first (make setup is idempotent).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
NPMSTAMP := node_modules/.installed

.PHONY: setup test test-fast times soak mutants corpus demo rehearsal bench lint contracts clean webapp docs release gas-report

setup: $(STAMP) $(NPMSTAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# npm ci refuses this lock file: npm 11 leaves other platforms' optional anvil binaries out of it.
# npm install with exact pins in package.json installs the same versions.
$(NPMSTAMP): package.json package-lock.json web/engine.js web/pay.js web/chain.js web/charts.js
	npm install --no-audit --no-fund --loglevel=error
	$(MAKE) webapp
	touch $(NPMSTAMP)

# the web app's vendored modules (/app), bundled by esbuild (no CDN at run time): scripts/build_webapp.py, which the
# package build (setup.py) runs too
docs: setup  # the docs site (mkdocs, strict: a broken link or anchor fails) into site/
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

webapp:
	$(BIN)/python scripts/build_webapp.py

# several workers (pytest-xdist), each test's world built once on one of them (tests/conftest.py); WORKERS=0 runs
# in this process
WORKERS ?= 4
UNIT    := not slow and not chain and not npm and not browser and not release

test: setup
	$(BIN)/python -m pytest -q -n $(WORKERS) --durations=30 $(PYTEST_ARGS)

# the unit lane: no compile or proof, no devnet, no npm tool, browser or release build (lanes: tests/conftest.py)
test-fast: setup
	$(BIN)/python -m pytest -q -n $(WORKERS) -m "$(UNIT)" $(PYTEST_ARGS)

# where the suite's time goes: the whole suite with its records, rendered into tests/TIMES.md, and each world's
# seconds into tests/worlds.json (the scheduler starts the longest worlds first)
times: setup
	rm -rf .times
	$(BIN)/python -m pytest -q -n $(WORKERS) --times .times $(PYTEST_ARGS); \
		code=$$?; $(BIN)/python scripts/test_times.py .times --out tests/TIMES.md --worlds tests/worlds.json; exit $$code

# gas per contract function across the chain tests, beside the last release's (bench/gas_functions.md; at a
# release: python scripts/gas_report.py run --release)
gas-report: setup
	$(BIN)/python scripts/gas_report.py run

# the mutation lane, outside CI's: each contract invariant's random search finding its planted bug from scratch
# (minutes each; CI replays the counterexample each search found)
mutants: setup
	$(BIN)/python -m pytest -q -n $(WORKERS) --mutants -m mutants tests/properties tests/chain $(PYTEST_ARGS)

# the corpus lane, outside CI's: the default exports whose compile search takes minutes each (CI compiles the others)
corpus: setup
	$(BIN)/python -m pytest -q -n $(WORKERS) --corpus tests/models/test_corpus.py $(PYTEST_ARGS)

# the soak lane, outside CI's: repeated end-to-end scenarios (tests/soak; SOAK_RUNS=N runs each, 10 by default)
soak: setup
	$(BIN)/python -m pytest -q --soak tests/soak $(PYTEST_ARGS)

demo: setup
	$(BIN)/python -m proofmarket.demo

# the Base Sepolia rehearsal on anvil (issue 22): chain 84532, USDC at its canonical address, the real commands
# with PROOFMARKET_CHAIN=base-sepolia; REHEARSAL_ARGS="--strict" also fails on pieces not landed, "--workdir DIR"
# keeps its chain, home and logs
rehearsal: setup
	$(BIN)/python -m proofmarket.demo.rehearsal $(REHEARSAL_ARGS)

bench: setup
	$(BIN)/python bench/run.py && $(BIN)/python bench/stamp.py results
	$(BIN)/python bench/verifier_gas.py && $(BIN)/python bench/stamp.py verifier_gas
	$(BIN)/python bench/gas.py && $(BIN)/python bench/stamp.py gas
	$(BIN)/python bench/batch_gas.py && $(BIN)/python bench/stamp.py batch_gas
	$(BIN)/python bench/proven_gas.py && $(BIN)/python bench/stamp.py proven_gas
	$(BIN)/python bench/http_bench.py && $(BIN)/python bench/stamp.py http
	$(BIN)/python bench/throughput.py && $(BIN)/python bench/stamp.py throughput
	$(BIN)/python bench/cli_overhead.py && $(BIN)/python bench/stamp.py cli
	$(BIN)/python bench/scaling.py && $(BIN)/python bench/stamp.py scaling
	$(BIN)/python bench/attested.py && $(BIN)/python bench/stamp.py attested
	$(BIN)/python bench/economics.py && $(BIN)/python bench/stamp.py economics
	$(BIN)/python bench/gas_attested.py && $(BIN)/python bench/stamp.py gas_attested gas
	$(BIN)/python bench/settlement.py && $(BIN)/python bench/stamp.py settlement
	$(BIN)/python bench/scale.py && $(BIN)/python bench/stamp.py scale
	$(BIN)/python bench/wasm_verify.py && $(BIN)/python bench/stamp.py wasm_verify
	$(BIN)/python bench/latency.py && $(BIN)/python bench/stamp.py latency
	$(BIN)/python bench/domain.py && $(BIN)/python bench/stamp.py domain
	$(BIN)/python bench/reach.py && $(BIN)/python bench/stamp.py reach
	$(BIN)/python bench/slices.py && $(BIN)/python bench/stamp.py slices
	$(BIN)/python bench/webapp.py && $(BIN)/python bench/stamp.py webapp
	$(MAKE) gas-report && $(BIN)/python bench/stamp.py gas_functions
	$(BIN)/python bench/readme.py

lint: setup
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_sizes.py
	$(BIN)/python scripts/check_env.py
	$(BIN)/python scripts/check_contracts.py
	$(BIN)/python scripts/check_slither.py

contracts: setup
	node scripts/compile_contracts.js

# what a user installs, from the last commit: sdist + wheel (twine-checked), the TypeScript client's npm tarball and
# the container image (when buildah is there), with SHA256SUMS, in dist/release (scripts/release.py)
release: setup
	$(BIN)/python scripts/release.py --out dist/release

clean:
	rm -rf .demo bench/out .pytest_cache .mypy_cache .ruff_cache .times
