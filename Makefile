# streamgate: `make demo` runs the embedded default, `make test` installs what is
# missing and runs every test. Build output lives outside the checkout so reruns are fast.

CACHE ?= $(HOME)/.cache/streamgate
export CARGO_TARGET_DIR ?= $(CACHE)/target
export STREAMGATE_TANSU ?= $(CACHE)/tansu-0.6.0-p3/bin/tansu
CARGO ?= cargo

.PHONY: demo test chaos soak plugins lint fmt setup bench bench-instructions bench-fast-start bench-fanout bench-ingest screenshots

## demo: simulated taxis on the in-memory bus, map at http://127.0.0.1:8080
demo:
	scripts/setup.sh rust
	$(CARGO) run -p streamgate -- demo

## test: install redis-server, tansu, the Wasm target, chromium and Playwright if missing;
## build plugins; run all tests (the pages' browser tests included)
test: setup
	$(CARGO) test --workspace

## chaos: the fault suite in full (longer phases, more events) against real tansu, redis-server
## and three streamgate processes, and 1,000,000 events ingested while instances join and leave;
## prints the table (kept in $(CARGO_TARGET_DIR)/chaos-table.md). `make test` runs its short version.
CHAOS_TABLE = $(CARGO_TARGET_DIR)/chaos-table.md
chaos: setup
	@rm -f $(CHAOS_TABLE)
	STREAMGATE_CHAOS=full STREAMGATE_CHAOS_TABLE=$(CHAOS_TABLE) $(CARGO) test -p streamgate --test chaos \
		-- --test-threads=1; status=$$?; echo; cat $(CHAOS_TABLE) 2>/dev/null; exit $$status

## soak: the soak in full (30 minutes: the demo's taxi map, 5,000 taxis at 1 Hz, and waiting
## queue, 50,000 users, through real tansu, redis-server and three instances; RSS, open fds and
## Redis memory sampled, growth bounded). Writes $(CARGO_TARGET_DIR)/soak-full.{md,svg} and, when
## it passes, copies the plot to docs/img/soak.svg. `make test` and `make chaos` run a one-minute version.
soak: setup
	STREAMGATE_SOAK=full $(CARGO) test -p streamgate --test chaos soak_holds -- --nocapture; status=$$?; \
		cat $(CARGO_TARGET_DIR)/soak-full.md 2>/dev/null; \
		if [ $$status -eq 0 ]; then cp $(CARGO_TARGET_DIR)/soak-full.svg docs/img/soak.svg; fi; exit $$status

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

## screenshots: run the browser tests and rewrite the README's docs/img/{map,queue}.png
screenshots:
	scripts/setup.sh browser
	STREAMGATE_UPDATE_SCREENSHOTS=1 $(CARGO) test -p streamgate --test browser

setup:
	scripts/setup.sh all

## bench: cost per event of the policy chain and of each builtin stage by batch size (Wasm vs native), the pause per chain swap,
## and swaps under load on two instances with real Kafka and Redis (prints tables)
bench:
	scripts/setup.sh all
	$(CARGO) bench -p streamgate-runtime --bench policy_chain
	$(CARGO) bench -p streamgate-runtime --bench policy_stages
	$(CARGO) bench -p streamgate-runtime --bench swap
	$(CARGO) test --release -p streamgate --test swaps -- --nocapture

## bench-instructions: the policy chain's table in instructions per event (valgrind's
## callgrind): the same on every run, for comparing builds on a busy machine (about 6 minutes)
bench-instructions:
	scripts/setup.sh rust
	scripts/setup.sh valgrind
	scripts/chain_instructions.sh

## bench-fast-start: start time of a late instance from a checkpoint and by a full replay, and
## the checkpoints' Redis memory, at a high ingest rate (FAST_START_RATE, FAST_START_SECONDS)
bench-fast-start:
	scripts/setup.sh all
	$(CARGO) bench -p streamgate --bench fast_start

## bench-fanout: streamgate (shipped defaults, real tansu + redis-server) and Nchan side by
## side with the same Rust SSE load client: latency, deliveries/s, CPU, memory per connection
bench-fanout:
	scripts/setup.sh all
	scripts/setup.sh nchan
	$(CARGO) bench -p streamgate --bench fanout

## bench-ingest: the rate one instance (shipped defaults) moves events from Kafka (real tansu)
## into the tenant's Redis stream, every event counted in the log: a preloaded topic drained,
## then a producer stepping up its rate until the instance falls behind (about 4 minutes)
bench-ingest:
	scripts/setup.sh all
	$(CARGO) bench -p streamgate --bench ingest
