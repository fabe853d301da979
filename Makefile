# Market-data platform: `make run` (main job) and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

SYMBOLS ?= AAPL,MSFT,NVDA,AMZN,SPY
START   ?= 2024-11-18
END     ?= 2024-12-07
WORKERS ?= 1

.PHONY: setup run test postgres-bin ui serve bench lock validate clean

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	@[ -f $@ ] || cp dagster.yaml $@

## The main job: an end-to-end ranged backfill of the whole graph on the offline source.
run: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/mdp backfill --symbols $(SYMBOLS) --start $(START) --end $(END) --workers $(WORKERS)

test: setup postgres-bin
	$(BIN)/pytest -q

## PostgreSQL server binaries for the instance-on-PostgreSQL test (Debian package; installed when
## missing and we may: root with apt-get, as on CI). The test starts its own throw-away cluster.
postgres-bin:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's postgresql (for the PostgreSQL instance test)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else echo "note: PostgreSQL server binaries not found; the PostgreSQL instance test will be skipped"; fi

## Dagster UI + daemon on http://127.0.0.1:3000 over the same instance as `make run`.
ui: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

validate: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster definitions validate -w workspace.yaml

bench: setup
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench

## Re-pin every dependency after changing pyproject.toml.
lock:
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

clean:
	rm -rf data .dagster_home

## The HTTP data service on http://127.0.0.1:8000 (docs at /docs) over the same instance and data.
serve: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/mdp serve
