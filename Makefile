# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_NODES ?= 5000
DEMO_SEED ?= 42

.PHONY: run test venv install install-test migrate demo lint format bench clean contracts npm npm-optional

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements/base.txt sdk/pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/base.txt
	$(BIN)/pip install --quiet -e sdk
	touch $@

$(VENV)/.installed-test: requirements/base.txt requirements/test.txt sdk/pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/test.txt
	$(BIN)/pip install --quiet -e sdk
	touch $@ $(VENV)/.installed

# Node.js packages (package-lock.json): solc and OpenZeppelin for contracts/, anvil for the EVM
# devnets. `make test` needs them (contract and deposit tests run on anvil); `make run` serves
# everything else without them, with crypto top-ups marked unavailable.
node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm not found: install Node.js 20+ (it provides npm), then run make again" >&2; exit 1; }
	npm ci --no-audit --no-fund
	touch $@

npm: node_modules/.installed

# The same, but a missing Node.js (or a failed npm ci) is a warning, not an error.
npm-optional:
	@$(MAKE) --no-print-directory node_modules/.installed || \
	  echo "WARNING: Node.js packages are not installed (npm missing or npm ci failed): the chain devnets and crypto top-ups are unavailable." >&2

install: $(VENV)/.installed npm-optional
install-test: $(VENV)/.installed-test node_modules/.installed

## contracts: recompiles contracts/src/*.sol into contracts/build/*.json (committed; a test compares)
contracts: node_modules/.installed
	node contracts/build.js contracts/build

migrate: install
	DEBUG=1 $(BIN)/python manage.py migrate --noinput

demo: migrate
	DEBUG=1 $(BIN)/python manage.py seed_demo --nodes $(DEMO_NODES) --seed $(DEMO_SEED)

# The devnets' recorder of match commitments, slasher and payout hot wallet: anvil's public test
# account #0 (it deploys the contracts and holds RECORDER_ROLE and SLASHER_ROLE; the devnet sends it
# $SPON for payouts from the treasury, account #1). A public key, refused by the app whenever DEBUG
# is off.
DEVNET_RECORDER_KEY := 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
# The devnets' treasury (anvil's public account #1): it receives slashed $SPON and returns it when an
# appeal is upheld.
DEVNET_TREASURY_KEY := 0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d

## run: web on http://127.0.0.1:8000 + Celery worker + beat, in the foreground (Ctrl-C stops all three)
run: demo
	@echo ""
	@echo "  Spheron Web: http://127.0.0.1:8000   (API docs: http://127.0.0.1:8000/api/v1/docs, admin: /admin/)"
	@echo "  Demo logins (password: spheron-demo): developer@spheron.test (\$$100 of demo credits), provider@spheron.test, admin@spheron.test"
	@echo "  E-mails (sign-up confirmation, password reset) are printed in this terminal."
	@echo ""
	DEBUG=1 CHAIN_RECORDER_KEY="$${CHAIN_RECORDER_KEY:-$(DEVNET_RECORDER_KEY)}" \
		CHAIN_SLASHER_KEY="$${CHAIN_SLASHER_KEY:-$(DEVNET_RECORDER_KEY)}" \
		CHAIN_PAYOUT_KEY="$${CHAIN_PAYOUT_KEY:-$(DEVNET_RECORDER_KEY)}" \
		CHAIN_TREASURY_KEY="$${CHAIN_TREASURY_KEY:-$(DEVNET_TREASURY_KEY)}" \
		PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile

## test: installs test dependencies and runs pytest (SQLite, or DATABASE_URL/REDIS_URL when set)
test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install-test
	DEBUG=1 $(BIN)/python bench/catalog.py --nodes 100000

clean:
	rm -rf var .pytest_cache
