# LLM Server. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UI_STAMP := frontend/dist/index.html
COMPOSE ?= docker compose -f docker-compose.yml
PYTEST_ARGS ?=

export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: help install run test test-unit lint fmt bench soak ui migrate revision seed-key keys \
        demo-model dev-local dev-cpu up down restart logs psql db-shell test-services compose-check clean

# Colour only on a terminal (and not under NO_COLOR): piped or logged, the codes are noise.
help: ## List the targets with one line each
	@if [ -t 1 ] && [ -z "$$NO_COLOR" ]; then on='\033[36m'; off='\033[0m'; else on=; off=; fi; \
	awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %s%-14s%s %s\n", on, $$1, off, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml uv.lock scripts/install.sh scripts/install-torch.sh
	@scripts/install.sh
	@touch $@

install: $(STAMP) ## Install uv, the locked dependencies and torch (CPU build on Linux)

.env.local:
	@$(BIN)/llmserver init-env

UI_SRC := $(shell find frontend/src frontend/public -type f 2>/dev/null) frontend/index.html \
          frontend/package.json frontend/vite.config.ts frontend/tsconfig.json

frontend/node_modules/.package-lock.json: frontend/package-lock.json
	@echo "==> installing the playground's npm packages"
	@cd frontend && npm ci --no-audit --no-fund --loglevel=error

$(UI_STAMP): frontend/node_modules/.package-lock.json $(UI_SRC)
	@echo "==> building the playground UI"
	@cd frontend && npm run build --silent

ui: $(UI_STAMP) ## Build the playground UI (frontend/dist, served at /ui)

demo-model: $(STAMP) ## Build the offline demo model (random weights)
	@$(BIN)/llmserver demo-model build

migrate: $(STAMP) ## Upgrade the database schema to head
	@$(BIN)/llmserver migrate

revision: $(STAMP) ## Autogenerate a migration: make revision m="add column"
	@test -n "$(m)" || { echo 'usage: make revision m="what changed"'; exit 2; }
	@$(BIN)/llmserver revision -m "$(m)"

run: $(STAMP) .env.local ui ## Install what is missing, migrate, and serve the demo model on :8000
	@$(BIN)/llmserver migrate
	@$(BIN)/llmserver demo-model build >/dev/null
	@LLMSERVER_BOOTSTRAP_ADMIN=$${LLMSERVER_BOOTSTRAP_ADMIN:-true} $(BIN)/llmserver serve

dev-cpu: $(STAMP) .env.local migrate ## Serve Llama 3.2 1B Instruct on torch CPU (needs the hub)
	@HF_HUB_OFFLINE=0 LLMSERVER_PROFILE=cpu $(BIN)/llmserver serve

dev-local: $(STAMP) .env.local migrate ## Serve Llama 3.1 8B Instruct on MLX (Apple silicon, needs the hub)
	@HF_HUB_OFFLINE=0 LLMSERVER_PROFILE=local $(BIN)/llmserver serve

seed-key: $(STAMP) .env.local migrate ## Create an admin key and print it once
	@$(BIN)/llmserver keys create --name "admin-$$(date +%Y%m%d%H%M%S)" --role admin

keys: $(STAMP) .env.local ## List API keys (no secrets)
	@$(BIN)/llmserver keys list

test-services: ## Start PostgreSQL and Redis for the tests when they are not running
	@scripts/test-services.sh

test: $(STAMP) lint test-services ui ## Run lint, then the whole test suite (installs browser and ops tools as needed)
	@scripts/install-browser.sh >/dev/null
	@scripts/install-ops-tools.sh >/dev/null
	@cd frontend && npm test --silent >/dev/null && echo "frontend: vitest passed"
	@# Two pytest-xdist workers, a module's tests on one of them (its servers are module
	@# fixtures): on two cores, 5.5 min where one process takes 8-9 (three workers: no faster).
	@# --durations: every run (CI's included) names its slowest tests, to keep the suite short.
	@$(BIN)/pytest -n 2 --dist loadscope --durations=25 $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-unit: $(STAMP) ## Run the fast pure-domain unit tests only
	@$(BIN)/pytest tests/unit -q

lint: $(STAMP) ## ruff (lint + format check), mypy --strict over src, tests and bench, import contracts
	@$(BIN)/ruff check src tests bench migrations
	@$(BIN)/ruff format --check src tests bench migrations
	@$(BIN)/mypy src tests bench
	@$(BIN)/lint-imports

fmt: $(STAMP) ## Format and auto-fix
	@$(BIN)/ruff format src tests bench migrations
	@$(BIN)/ruff check --fix src tests bench migrations

bench: $(STAMP) test-services ## Run the benchmarks; tables printed and written to bench/results/
	@scripts/install-bench-tools.sh
	@scripts/install-litellm.sh || echo "LiteLLM did not install: the proxy benchmark runs without it"
	@$(BIN)/python -m bench $(BENCH)

soak: $(STAMP) test-services ## Heavier reliability runs (replicas, faults)
	@LLMSERVER_SOAK=1 $(BIN)/pytest tests/integration/reliability -m "slow or not slow" $(PYTEST_ARGS)

up: ## Start the compose stack (api, postgres, redis, nginx, prometheus, grafana, pgadmin)
	$(COMPOSE) up -d --build

down: ## Stop the compose stack
	$(COMPOSE) down

restart: ## Restart the compose stack (nginx last, so it re-resolves scaled replicas)
	$(COMPOSE) restart
	$(COMPOSE) restart nginx

logs: ## Follow the compose stack's logs
	$(COMPOSE) logs -f --tail=200

psql: ## Open psql on the compose stack's database
	$(COMPOSE) exec postgres sh -c 'psql -U "$$POSTGRES_USER" "$$POSTGRES_DB"'

db-shell: ## Open a shell on the configured database (sqlite3 or psql)
	@url=$$($(BIN)/python -c "from llmserver.app.settings import load_settings as l; print(l().database_url)"); \
	case $$url in sqlite*) sqlite3 $${url#*:///} ;; *) psql "$${url/+asyncpg/}" ;; esac

compose-check: $(STAMP) ## Validate docker-compose.yml with the real Compose v2 binary (no engine needed)
	@$(VENV)/lib/python3*/site-packages/compose/docker-compose -f docker-compose.yml config -q && echo "compose file OK"

clean: ## Remove the venv, caches and build outputs
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache frontend/dist frontend/node_modules
