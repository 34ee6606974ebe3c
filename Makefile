# Stardust for Go. `make run` starts the server in memory with no set-up;
# `make test` runs every check CI runs.

GO        ?= go
PKGS      := ./...
FUZZTIME  ?= 5s
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
CLIENTS   := integration/clients

.PHONY: all build run test check unit fuzz bench load soak node-deps clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/stardust ./cmd/stardust

run:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/stardust --demo

# Everything: formatting, vet, the race-enabled tests (integration tests
# included: they skip loudly when nginx, apache2 or node are missing, and fail
# instead when STARDUST_REQUIRE_INTEGRATION=1), then a short run of every
# fuzz target.
test: check node-deps unit fuzz

check:
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi
	$(GO) vet $(PKGS)

unit:
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

# Each fuzz target for a short while (go test allows one -fuzz target per run).
fuzz:
	@set -e; for spec in \
	    ./conf:FuzzDecode \
	    ./server:FuzzParseChannel \
	    ./server:FuzzDecodeMessages \
	    ./server:FuzzStardustURL \
	    ./server:FuzzCheckHash \
	    $$(grep -l '^func Fuzz' server/bayeux*_test.go 2>/dev/null | xargs -r grep -ho '^func Fuzz[A-Za-z]*' | sed 's/func /.\/server:/') \
	    $$(grep -l '^func Fuzz' fcgi/*_test.go 2>/dev/null | xargs -r grep -ho '^func Fuzz[A-Za-z]*' | sed 's/func /.\/fcgi:/') \
	    $$(grep -l '^func Fuzz' internal/fcgitest/*_test.go 2>/dev/null | xargs -r grep -ho '^func Fuzz[A-Za-z]*' | sed 's/func /.\/internal\/fcgitest:/'); do \
	  pkg=$${spec%%:*}; fn=$${spec##*:}; \
	  echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./server/

# A short load run against a server started here on a spare loopback port
# (bounded: 10 s of publishing); see BENCHMARKS.md for bigger runs.
LOADPORT ?= 5799
load: build
	@bin/stardust --listen 127.0.0.1:$(LOADPORT) --log-level warn & pid=$$!; \
	trap 'kill $$pid' EXIT; sleep 1; \
	$(GO) run ./cmd/stardust-load --url http://127.0.0.1:$(LOADPORT)/comet \
	  --clients 500 --channels 5 --publishers 2 --rate 200 --duration 10s --pid $$pid

# Minutes of churn (Bayeux clients that connect, publish, receive and
# disconnect or walk away; Stardust clients polling once under new ids)
# against a server started here on a spare loopback port, with its resident
# memory sampled; fails if it grows more than 20% after warm-up. Bounded:
# SOAKTIME (default 3m, at most 10m). See BENCHMARKS.md.
SOAKPORT ?= 5798
SOAKTIME ?= 3m
soak: build
	@bin/stardust -c cmd/stardust-soak/soak.toml --listen 127.0.0.1:$(SOAKPORT) & pid=$$!; \
	trap 'kill $$pid' EXIT; sleep 1; \
	$(GO) run ./cmd/stardust-soak --url http://127.0.0.1:$(SOAKPORT)/comet --duration $(SOAKTIME) --pid $$pid

# The Node clients (CometD, Faye) the integration tests drive, from the
# committed lock file. Skipped when npm is missing (the tests then skip loudly).
node-deps:
	@if [ -d $(CLIENTS) ] && command -v npm >/dev/null 2>&1; then \
	  if [ ! -d $(CLIENTS)/node_modules ] || [ $(CLIENTS)/package-lock.json -nt $(CLIENTS)/node_modules ]; then \
	    (cd $(CLIENTS) && npm ci --no-audit --no-fund) && touch $(CLIENTS)/node_modules; \
	  fi; \
	fi

clean:
	rm -rf bin
