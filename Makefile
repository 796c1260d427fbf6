# Developer entry points. Backing services (PostgreSQL, NATS JetStream) are
# started on demand by scripts/services.sh, from DATABASE_URL / NATS_URL
# (defaults: postgres://postgres@127.0.0.1:5432/commerce, nats://127.0.0.1:4222).

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo

.PHONY: help services run run-cluster test lint bench migrate stop

help:
	@echo "Targets:"
	@echo "  make services  start/check PostgreSQL and NATS JetStream (scripts/services.sh up)"
	@echo "  make run       run the server with the demo catalog (release build)"
	@echo "  make run-cluster  the same on a 3-node NATS JetStream cluster on loopback (ports 4301-4303,"
	@echo "                 data in .data/nats-cluster), R3 stream; stop it: scripts/nats-cluster.sh down"
	@echo "  make test      run all workspace tests (needs services), schemathesis included"
	@echo "  make lint      cargo fmt --check and clippy with -D warnings"
	@echo "  make bench     run the benchmark crate (commerce-bench); ARGS=--quick for a short run"
	@echo "  make migrate   apply database migrations"
	@echo "  make stop      stop services started under .data (scripts/services.sh down)"
	@echo "  make help      this list"

services:
	scripts/services.sh up

run: services
	$(CARGO) run --release --bin commerce -- serve --demo-catalog

# The cluster first, so that services.sh finds NATS answering at the list's first server and
# only sees to PostgreSQL.
run-cluster:
	scripts/nats-cluster.sh up
	NATS_URL="$$(scripts/nats-cluster.sh url)" scripts/services.sh up
	NATS_URL="$$(scripts/nats-cluster.sh url)" COMMERCE_STREAM_REPLICAS=3 \
		$(CARGO) run --release --bin commerce -- serve --demo-catalog

# The fault suite (tests/faults) runs the `commerce` binary as separate processes: build it first
# (cargo test builds a binary only for its own package's tests). The contract suite
# (tests/contract) runs the pinned schemathesis and openapi-spec-validator from .tools/venv.
test: services
	$(CARGO) build --bin commerce
	scripts/api-tools.sh >/dev/null
	RUST_BACKTRACE=1 $(CARGO) test --workspace --all-targets

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The scale-out scenario runs the `commerce` binary as separate processes: build it first.
bench: services
	$(CARGO) build --release --bin commerce
	$(CARGO) run --release -p commerce-bench -- $(ARGS)

migrate: services
	$(CARGO) run --release --bin commerce -- migrate

stop:
	scripts/services.sh down
