# cbfs: see README.md. Every target works on a fresh machine: Go modules
# come from the module proxy, Debian packages from scripts/deps.sh.
GO       ?= go
FUZZTIME ?= 30s
BIN      := bin/cbfs
# The packages with goroutines of their own, run again under the race
# detector (-short leaves out the every-offset corruption sweeps, which
# the plain run covers).
RACE_PKGS := ./format ./index ./store ./repo ./tree ./internal/...

.PHONY: all build demo test bench fuzz lint vectors man clean

all: build

# -buildvcs=auto: --version names the commit when built from a checkout,
# whatever GOFLAGS says.
build:
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/cbfs

demo: build
	./scripts/demo.sh $(BIN)

# The seed corpora of every fuzz target run in go test; then each target
# fuzzes for a few seconds, as a smoke test of the fuzzing itself.
test: lint
	./scripts/deps.sh test
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -race -short -count=1 -timeout 20m $(RACE_PKGS)
	./scripts/fuzz.sh 2s

bench: build
	./scripts/deps.sh bench
	./scripts/bench.sh $(BIN)

fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

vectors:
	$(GO) run ./spec/gen -o spec/vectors

# Man pages, one per command, generated from the commands' own help.
man: build
	./$(BIN) gen-man man

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin man
