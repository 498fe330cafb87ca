# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_NODES ?= 5000
DEMO_SEED ?= 42

.PHONY: run test venv install install-test migrate demo lint format bench clean

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

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

migrate: install
	DEBUG=1 $(BIN)/python manage.py migrate --noinput

demo: migrate
	DEBUG=1 $(BIN)/python manage.py seed_demo --nodes $(DEMO_NODES) --seed $(DEMO_SEED)

## run: web on http://127.0.0.1:8000 + Celery worker + beat, in the foreground (Ctrl-C stops all three)
run: demo
	@echo ""
	@echo "  Spheron Web: http://127.0.0.1:8000   (API docs: http://127.0.0.1:8000/api/v1/docs, admin: /admin/)"
	@echo "  Demo logins (password: spheron-demo): developer@spheron.test (\$$100 of demo credits), provider@spheron.test, admin@spheron.test"
	@echo "  E-mails (sign-up confirmation, password reset) are printed in this terminal."
	@echo ""
	DEBUG=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile

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
