# streamgate: `make demo` runs the embedded default, `make test` installs what is
# missing and runs every test. Build output lives outside the checkout so reruns are fast.

CACHE ?= $(HOME)/.cache/streamgate
export CARGO_TARGET_DIR ?= $(CACHE)/target
export STREAMGATE_TANSU ?= $(CACHE)/tansu-0.6.0/bin/tansu
CARGO ?= cargo

.PHONY: demo test plugins lint fmt setup bench bench-fanout

## demo: simulated taxis on the in-memory bus, map at http://127.0.0.1:8080
demo:
	scripts/setup.sh rust
	$(CARGO) run -p streamgate -- demo

## test: install redis-server, tansu and the Wasm target if missing; build plugins; run all tests
test: setup
	$(CARGO) test --workspace

## plugins: build every policy plugin as a Wasm component
plugins:
	scripts/setup.sh rust
	$(CARGO) build -p streamgate-runtime
	@ls -l $(CARGO_TARGET_DIR)/plugins/components/*.wasm

## lint: formatting, clippy (warnings are errors), the layout rules (no module cycles,
## small files), and a kit crate free of Kafka, Redis and HTTP
lint:
	scripts/setup.sh rust
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	python3 scripts/check_layout.py
	scripts/check_kit_deps.sh

fmt:
	$(CARGO) fmt --all

setup:
	scripts/setup.sh all

## bench: cost per event of the policy chain (Wasm vs native), the pause per chain swap,
## and swaps under load on two instances with real Kafka and Redis (prints tables)
bench:
	scripts/setup.sh all
	$(CARGO) bench -p streamgate-runtime --bench policy_chain
	$(CARGO) bench -p streamgate-runtime --bench swap
	$(CARGO) test --release -p streamgate --test swaps -- --nocapture

## bench-fanout: streamgate (shipped defaults, real tansu + redis-server) and Nchan side by
## side with the same Rust SSE load client: latency, deliveries/s, CPU, memory per connection
bench-fanout:
	scripts/setup.sh all
	scripts/setup.sh nchan
	$(CARGO) bench -p streamgate --bench fanout
