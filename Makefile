# The two commands users need: `make run` and `make test`. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= uv
STACK := deploy/local/stack.sh
# Commands started from here are local runs: the public local default secrets are accepted (compose
# and Kubernetes never set this; a service refuses those secrets anywhere else).
export SHOP_LOCAL_MODE ?= true
PACKAGES := -p shop_contracts -p shopkit -p point -p product -p coupon -p order -p ranking -p dataplatform_standin

.PHONY: help deps stack stop run test lint format contracts contracts-check bench token ranking-snapshot deadletters reconcile-gates chaos

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

deps: ## install the Python workspace from the lock file
	@command -v $(UV) >/dev/null || pip install -q uv==0.13.8
	$(UV) sync --frozen --all-packages --quiet

stack: ## start Kafka, PostgreSQL and Redis (idempotent; skips what points elsewhere); install nginx
	$(STACK) up
	deploy/local/gateway.sh install

run: deps stack ## start the whole system with demo data and print the URLs
	deploy/local/run.sh
	deploy/local/gateway.sh up

stop: ## stop the services and everything `make stack` started
	-deploy/local/gateway.sh down
	-deploy/local/run.sh stop
	$(STACK) down

test: deps stack ## every test against the real stack (unit, integration, contract, end-to-end)
	$(UV) run pytest

lint: deps ## ruff (lint + format check) and mypy --strict
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy $(PACKAGES)

format: deps ## apply ruff's formatting and fixes
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

contracts: deps ## export JSON Schemas and the AsyncAPI document into libs/contracts
	$(UV) run python -m shop_contracts.export

contracts-check: deps ## fail when the committed contracts differ or a change is breaking
	$(UV) run python -m shop_contracts.export --check

token: deps ## mint a demo JWT (12 h): make token ROLE=user SUB=42, make token ROLE=admin
	@$(UV) run python -W ignore -c "from shopkit.http.auth import mint; print(mint('$${JWT_SECRET:-local-dev-secret}', '$(or $(SUB),1)', '$(or $(ROLE),user)', ttl_s=12 * 3600))"

bench: deps stack ## benchmarks: wrk load vs a bare reference, checks, report with charts (BENCH_* vars; BENCH_AB=HEAD~3: cost of an order, that commit vs the working tree)
	@command -v wrk >/dev/null || $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y wrk
	$(UV) run python -W ignore::UserWarning -m benchmarks

ranking-snapshot: deps ## run the daily ranking job now (optionally AS_OF=2026-03-10T00:01+09:00)
	$(UV) run python -m ranking.snapshot $(if $(AS_OF),--as-of $(AS_OF))

deadletters: deps ## dead letters: list, or ARGS="show ID", ARGS="replay ID…|--all [--consumer C]"
	@$(UV) run python -m shopkit.ops.deadletters $(or $(ARGS),list)

reconcile-gates: deps ## take back coupon-gate admissions no issued copy backs (ARGS="--coupon 3")
	$(UV) run python -m coupon.reconcile $(ARGS)

chaos: deps stack ## crash every process, restart Kafka and PostgreSQL, flush Redis under load; check nothing was lost (CHAOS_ROUNDS=3)
	$(UV) run python -m tests.chaos
