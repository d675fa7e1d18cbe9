# talos-fleet. `make help` lists the targets; README.md explains them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STACK  ?=
# make plan: the git ref to compare with (default: the merge-base with main), output format
# (markdown or json), a Talos machine-config JSON Schema to lint patches with, and, for `make
# plans`, the directory to write every stack's plan into.
BASE   ?=
FORMAT ?= markdown
SCHEMA ?=
OUT    ?= plan
# make up YES=1: no confirmation prompt (CI: the GitHub environment's reviewers approved already).
YES    ?=
PLAN_FLAGS = $(if $(BASE),--base '$(BASE)') $(if $(SCHEMA),--schema '$(SCHEMA)')
# A local file state backend inside the repo (git-ignored) unless the caller chose one.
BACKEND := $(or $(PULUMI_BACKEND_URL),file://$(CURDIR)/.pulumi-state)
PULUMI  := PULUMI_BACKEND_URL=$(BACKEND) pulumi

.PHONY: help venv test lint typecheck unit bench schema lock validate up preview kubeconfig talosconfig \
        need-stack need-pulumi clean preflight plan plans stacks

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

# The virtualenv, built from nothing when missing and rebuilt when a lock file changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes \
		-r requirements.txt -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed ## build the virtualenv (.venv) from the lock files

test: lint typecheck unit ## ruff, mypy and pytest (what CI runs)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest

bench: venv ## evaluate generated fleets of 10/100/1,000 nodes under mocks; print time, resources, calls
	$(BIN)/python -m bench

schema: venv ## regenerate schema/talos-fleet.schema.json from the spec models
	$(BIN)/python -m talos_fleet schema > schema/talos-fleet.schema.json

lock: venv ## re-resolve requirements*.txt from requirements*.in (needs pip-tools)
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --strip-extras --generate-hashes --no-emit-index-url --no-emit-find-links \
		-o requirements.txt requirements.in
	$(BIN)/pip-compile --quiet --strip-extras --generate-hashes --no-emit-index-url --no-emit-find-links \
		-o requirements-dev.txt requirements-dev.in

validate: need-stack venv ## check stacks/Pulumi.$(STACK).yaml offline
	@$(BIN)/python -m talos_fleet validate stacks/Pulumi.$(STACK).yaml

plan: need-stack venv ## offline: what changing STACK does per node vs BASE (FORMAT=json, SCHEMA=path)
	@$(BIN)/python -m talos_fleet plan stacks/Pulumi.$(STACK).yaml --format '$(FORMAT)' $(PLAN_FLAGS)

plans: venv ## every stack's plan vs BASE into OUT/<stack>.md and .json (the pull-request comments)
	@mkdir -p '$(OUT)'; status=0; for file in stacks/Pulumi.*.yaml; do \
		stack=$${file#stacks/Pulumi.}; stack=$${stack%.yaml}; echo "$(OUT)/$$stack.md"; \
		$(BIN)/python -m talos_fleet plan "$$file" --out "$(OUT)/$$stack.md" --json-out "$(OUT)/$$stack.json" \
			$(PLAN_FLAGS) || status=1; \
	done; exit $$status

stacks: ## the stack names, as a JSON list
	@ls stacks | sed -nE 's/^Pulumi\.(.+)\.yaml$$/"\1"/p' | paste -sd, | sed 's/.*/[&]/'

preflight: need-stack venv ## host checks for STACK's hypervisors (KVM, OVMF, storage pool)
	@$(BIN)/python -m tools.preflight stacks/Pulumi.$(STACK).yaml

up: need-stack need-pulumi validate preflight ## pulumi up for STACK (local state in .pulumi-state unless PULUMI_BACKEND_URL)
	@mkdir -p .pulumi-state
	@for tool in talosctl kubectl; do command -v $$tool >/dev/null 2>&1 || \
		echo "note: $$tool is not installed; creating a cluster does not need it, upgrades and node removal do (README: Set up, Day 2)"; done
	$(PULUMI) stack select --create $(STACK)
	$(PULUMI) up --stack $(STACK) $(if $(filter 1 true yes,$(YES)),--yes)

preview: need-stack need-pulumi validate ## pulumi preview --diff for STACK
	@mkdir -p .pulumi-state
	$(PULUMI) stack select --create $(STACK)
	$(PULUMI) preview --diff --stack $(STACK)

kubeconfig: need-stack need-pulumi venv ## write credentials/$(STACK)/<cluster>.kubeconfig (mode 0600)
	@$(PULUMI) stack output --stack $(STACK) --show-secrets --json kubeconfig \
		| $(BIN)/python -m tools.write_credentials kubeconfig credentials/$(STACK)

talosconfig: need-stack need-pulumi venv ## write credentials/$(STACK)/<cluster>.talosconfig (mode 0600)
	@$(PULUMI) stack output --stack $(STACK) --show-secrets --json talosconfig \
		| $(BIN)/python -m tools.write_credentials talosconfig credentials/$(STACK)

need-stack:
	@if [ -z "$(STACK)" ]; then \
		echo "make: say which stack, e.g. 'make $(firstword $(MAKECMDGOALS)) STACK=edge'; stacks:" \
			$$(ls stacks | sed -nE 's/^Pulumi\.(.+)\.yaml$$/\1/p') >&2; exit 2; fi
	@if [ ! -f "stacks/Pulumi.$(STACK).yaml" ]; then \
		echo "make: no stacks/Pulumi.$(STACK).yaml; stacks:" \
			$$(ls stacks | sed -nE 's/^Pulumi\.(.+)\.yaml$$/\1/p') >&2; exit 2; fi

need-pulumi:
	@command -v pulumi >/dev/null 2>&1 || { \
		echo "make: the Pulumi CLI is not installed. Install it (https://www.pulumi.com/docs/iac/download-install/)," >&2; \
		echo "      for example: curl -fsSL https://get.pulumi.com | sh   then open a new shell and re-run." >&2; \
		exit 127; }

clean: ## remove the virtualenv and caches (keeps .pulumi-state and credentials)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
