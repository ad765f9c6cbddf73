# Build, test and run tom. `make test` is what CI runs (through .ci/run).

CARGO ?= cargo
N ?= 4
PORT ?= 9999
HELPER ?= 127.0.0.1:9999

.PHONY: build run test helper member lint

build:
	$(CARGO) build --release

# A helper and three members on 127.0.0.1 multicast at once; prints their sequences side by side.
run: build
	@bash tests/lab/run.sh

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
