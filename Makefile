# Build, test and run tom. `make test` is what CI runs (through .ci/run).

CARGO ?= cargo
N ?= 4
PORT ?= 9999
HELPER ?= 127.0.0.1:9999

.PHONY: build test helper member lint

build:
	$(CARGO) build --release

# One test thread: the tests that start processes or wait on deadlines must not compete for the CPU.
# --no-fail-fast: one failing test binary must not hide the results of the others.
test:
	$(CARGO) test --no-fail-fast -- --test-threads=1

helper: build
	./target/release/tom-helper --size $(N) --port $(PORT)

member: build
	./target/release/tom-member --helper $(HELPER)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
