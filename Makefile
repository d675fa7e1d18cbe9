# talos-fleet. `make help` lists the targets; README.md explains them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
# The oldest Python the lock files resolve for (pyproject.toml requires-python).
MIN_PYTHON := 3.11
# Prints an interpreter's <major>.<minor>: compared with MIN_PYTHON and with what built .venv.
PY_VERSION := -c 'import sys; print(*sys.version_info[:2], sep=".")'
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
# make secret: the name under talos-fleet:secrets. make destroy CONFIRM=<stack>: the answer to
# its question, for automation (YES=1 is not enough to delete a cluster's PKI).
NAME    ?=
CONFIRM ?=
# A make value as one single-quoted shell word, whatever it holds.
quote = '$(subst ','\'',$(1))'
# NAME and CONFIRM count only when given on make's command line: an environment variable that
# happens to be called NAME (WSL sets one) must never name a secret or confirm a destroy.
ARG = $(if $(filter command line,$(origin $(1))),$(value $(1)))
PLAN_FLAGS = $(if $(BASE),--base '$(BASE)') $(if $(SCHEMA),--schema '$(SCHEMA)')
# A local file state backend inside the repo (git-ignored) unless the caller chose one.
BACKEND := $(or $(PULUMI_BACKEND_URL),file://$(CURDIR)/.pulumi-state)
PULUMI  := PULUMI_BACKEND_URL=$(BACKEND) pulumi
# The local backend's directory must exist before Pulumi logs in to it.
LOCAL_STATE = $(if $(PULUMI_BACKEND_URL),:,mkdir -p .pulumi-state)
# Checked after the offline checks, so a host without Pulumi still hears about everything else.
CHECK_PULUMI = command -v pulumi >/dev/null 2>&1 || { \
	echo "make: the Pulumi CLI is not installed. Install it (https://www.pulumi.com/docs/iac/download-install/)," >&2; \
	echo "      for example: curl -fsSL https://get.pulumi.com | sh   then open a new shell and re-run." >&2; \
	false; }

.PHONY: help venv test lint typecheck unit bench schema lock validate up preview kubeconfig talosconfig \
        need-stack need-pulumi clean preflight plan plans stacks destroy secret urls status

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

# Every target that needs the virtualenv checks the Python first: one older than MIN_PYTHON gets
# a message instead of a dependency-resolution error, and a .venv made by another Python (or one
# that no longer runs) is rebuilt instead of reused.
venv: ## build the virtualenv (.venv) from the lock files with PYTHON (3.11 or newer)
	@have=$$($(PYTHON) $(PY_VERSION) 2>/dev/null) || have=; \
	if [ -z "$$have" ]; then \
		echo "make: '$(PYTHON)' does not run. talos-fleet needs Python $(MIN_PYTHON) or newer: install it and run make PYTHON=python3.11 ..." >&2; \
		exit 1; fi; \
	if ! printf '%s\n' $(MIN_PYTHON) "$$have" | sort -V -C; then \
		echo "make: '$(PYTHON)' is Python $$have; talos-fleet needs Python $(MIN_PYTHON) or newer. Install one (Debian/Ubuntu:" >&2; \
		echo "      python3.11 python3.11-venv) and run make with PYTHON=python3.11 (or newer), e.g. make test PYTHON=python3.11" >&2; \
		exit 1; fi; \
	if [ -e $(VENV) ] || [ -L $(VENV) ]; then \
		built=$$($(BIN)/python $(PY_VERSION) 2>/dev/null) || built=; \
		if [ "$$built" != "$$have" ]; then \
			echo "make: $(VENV) was built by $${built:+Python $$built}$${built:-a Python that no longer runs}; rebuilding it with $(PYTHON) (Python $$have)"; \
			rm -rf $(VENV); fi; fi
	@$(MAKE) --no-print-directory --silent $(VENV)/.installed

# Built from nothing when missing (by `venv`, after its checks) and updated when a lock file changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "make: '$(PYTHON) -m venv' failed; install the venv module (Debian/Ubuntu: python3-venv) and re-run" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes \
		-r requirements.txt -r requirements-dev.txt
	@touch $@

test: lint typecheck unit ## ruff, mypy and pytest (what CI runs)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest

bench: venv ## evaluate generated fleets of 10 to 3,000 nodes under mocks beside their floor; print CPU and wall time
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

preflight: need-stack venv ## host checks for STACK's hypervisors (KVM, OVMF, xsltproc, virsh, libvirt daemon, storage pool)
	@$(BIN)/python -m tools.preflight stacks/Pulumi.$(STACK).yaml

# Offline checks first (the stack file, then the host), then the tools: each problem is reported
# before anything runs, and preflight's and Pulumi's together.
up: need-stack validate ## validate, check the host, then pulumi up for STACK (state in .pulumi-state unless PULUMI_BACKEND_URL)
	@failed=0; $(BIN)/python -m tools.preflight stacks/Pulumi.$(STACK).yaml || failed=1; \
		$(CHECK_PULUMI) || failed=1; exit $$failed
	@for tool in talosctl kubectl; do command -v $$tool >/dev/null 2>&1 || \
		echo "note: $$tool is not installed; creating a cluster does not need it, upgrades and node removal do (README: Set up, Day 2)"; done
	@$(LOCAL_STATE)
	$(PULUMI) stack select --create $(STACK)
	$(PULUMI) up --stack $(STACK) $(if $(filter 1 true yes,$(YES)),--yes)

preview: need-stack validate ## pulumi preview --diff for STACK
	@$(CHECK_PULUMI) || exit 127
	@$(LOCAL_STATE)
	$(PULUMI) stack select --create $(STACK)
	$(PULUMI) preview --diff --stack $(STACK)

urls: need-stack venv ## offline: Image Factory ISO, PXE and installer URLs and schematic id per cluster and architecture
	@$(BIN)/python -m talos_fleet urls stacks/Pulumi.$(STACK).yaml

# Creates the stack on the same backend as `make up` if needed, so a secret the stack file needs
# can be set before the first `up`. The value is never an argument (shell history, ps): Pulumi's
# `config set` without a value reads it from a pipe, or prompts without echo on a terminal
# (pulumi/pulumi v3.259.0:pkg/cmd/pulumi/config/config.go, configSetCmd.Run; a piped value loses
# its trailing newline unless --raw).
secret: need-stack venv ## set talos-fleet:secrets.NAME for STACK from standard input: make secret STACK=edge NAME=rack-luks < file
	@$(BIN)/python -m talos_fleet secret-name -- $(call quote,$(call ARG,NAME))
	@$(CHECK_PULUMI) || exit 127
	@$(LOCAL_STATE)
	$(PULUMI) stack select --create $(STACK)
	@if [ -t 0 ]; then echo "Type the value of secret $(NAME) (not shown), then Enter; or pipe it in: make secret STACK=$(STACK) NAME=$(NAME) < file"; fi
	$(PULUMI) config set --secret --path --stack $(STACK) 'talos-fleet:secrets.$(NAME)'
	@echo "Set talos-fleet:secrets.$(NAME) (encrypted) in stacks/Pulumi.$(STACK).yaml; commit it with the stack file."

# Deletes everything, the protected Talos secrets (each cluster's PKI) included, only after the
# operator typed the stack name (or passed CONFIRM=<stack>). The summary comes from the state
# because a destroy preview fails on protected resources. `state unprotect --all --yes` clears
# protect on every resource not pending deletion (pulumi/pulumi v3.259.0:pkg/cmd/pulumi/state/
# state_unprotect.go); `destroy --yes` deletes without a second prompt and keeps the stack and
# its stack file (without --remove; pkg/cmd/pulumi/operations/destroy.go). TALOS_FLEET_DESTROY=1
# reaches the day-2 steps: the engine starts the command provider with the CLI's environment
# (sdk/go/common/resource/plugin/plugin.go) and pulumi-command runs commands with its own
# (pulumi/pulumi-command v1.2.1:provider/pkg/provider/local/commandOutputs.go).
destroy: need-stack venv ## delete every resource of STACK, the Talos secrets (cluster PKI) too, after you confirm
	@$(CHECK_PULUMI) || exit 127
	@set -e; state=$$($(PULUMI) stack export --stack $(STACK)); \
	status=0; printf '%s' "$$state" | $(BIN)/python -m tools.destroy_summary $(STACK) || status=$$?; \
	if [ $$status = 3 ]; then exit 0; elif [ $$status != 0 ]; then exit $$status; fi; \
	answer=$(call quote,$(call ARG,CONFIRM)); \
	if [ -z "$$answer" ]; then \
		printf 'Type the stack name (%s) to delete all of this, or anything else to stop: ' $(STACK); \
		read -r answer || answer=; fi; \
	if [ "$$answer" != $(STACK) ]; then \
		echo "make destroy: the answer is not '$(STACK)'; nothing was unprotected or deleted. For automation: make destroy STACK=$(STACK) CONFIRM=$(STACK)" >&2; \
		exit 1; fi; \
	$(PULUMI) state unprotect --all --yes --stack $(STACK); \
	TALOS_FLEET_DESTROY=1 $(PULUMI) destroy --yes --stack $(STACK)

kubeconfig: need-stack need-pulumi venv ## write credentials/$(STACK)/<cluster>.kubeconfig (mode 0600)
	@$(PULUMI) stack output --stack $(STACK) --show-secrets --json kubeconfig \
		| $(BIN)/python -m tools.write_credentials kubeconfig credentials/$(STACK)

talosconfig: need-stack need-pulumi venv ## write credentials/$(STACK)/<cluster>.talosconfig (mode 0600)
	@$(PULUMI) stack output --stack $(STACK) --show-secrets --json talosconfig \
		| $(BIN)/python -m tools.write_credentials talosconfig credentials/$(STACK)

# Every node's real state against the stack file, with the stack's own credentials (its secret
# outputs, piped: never in a file but the private ones the CLI writes and removes). FORMAT and
# OUT count only when given (FORMAT's default is plan's): table on stdout otherwise. Exit status
# 0 all good, 1 something needs a person, 2 status could not run (pipefail: the CLI's status, or
# pulumi's when only `pulumi stack output` failed).
status: need-stack need-pulumi venv ## every node vs STACK's stack file: versions, health, drift, certificates (FORMAT=markdown|json OUT=file)
	@set -o pipefail; $(PULUMI) stack output --stack $(STACK) --show-secrets --json \
		| $(BIN)/python -m talos_fleet status stacks/Pulumi.$(STACK).yaml --outputs - \
			--format $(if $(filter command line environment,$(origin FORMAT)),$(call quote,$(FORMAT)),table) \
			$(if $(filter command line,$(origin OUT)),--out $(call quote,$(OUT)))

need-stack:
	@if [ -z "$(STACK)" ]; then \
		echo "make: say which stack, e.g. 'make $(firstword $(MAKECMDGOALS)) STACK=edge'; stacks:" \
			$$(ls stacks | sed -nE 's/^Pulumi\.(.+)\.yaml$$/\1/p') >&2; exit 2; fi
	@if [ ! -f "stacks/Pulumi.$(STACK).yaml" ]; then \
		echo "make: no stacks/Pulumi.$(STACK).yaml; stacks:" \
			$$(ls stacks | sed -nE 's/^Pulumi\.(.+)\.yaml$$/\1/p') >&2; exit 2; fi

need-pulumi:
	@$(CHECK_PULUMI) || exit 127

clean: ## remove the virtualenv and caches (keeps .pulumi-state and credentials)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
