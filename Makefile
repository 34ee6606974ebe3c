# Stardust for Go. `make run` starts the server in memory with no set-up;
# `make test` runs every check CI runs.

GO        ?= go
PKGS      := ./...
FUZZTIME  ?= 5s
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
CLIENTS   := integration/clients

.PHONY: all build run test check cross unit fuzz bench load soak node-deps compare compare-big compare-tools centrifugo scale-100k clean deb dist

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/stardust ./cmd/stardust

run:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/stardust --demo

# Everything: formatting, vet, the race-enabled tests (integration tests
# included: they skip loudly when nginx, apache2 or node are missing, and fail
# instead when STARDUST_REQUIRE_INTEGRATION=1), then a short run of every
# fuzz target.
test: check cross node-deps unit fuzz

check:
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi
	$(GO) vet $(PKGS)

# Every package (tests included) vets, and every package builds and links,
# on each system and architecture we claim (vet alone does not link: a main
# package with no main for a target passed it): the connection takeover's raw-descriptor path is
# Unix-only (internal/takeover), with the portable path elsewhere.
CROSS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64 freebsd/amd64 freebsd/arm64

# Vet type-checks every package and its tests against dependencies compiled
# for the target; on a fresh machine compiling them (the standard library,
# chromedp's generated protocol) is nearly all the time. The optimiser plays no
# part in whether code builds or vets, so the other targets compile without it
# (-N -l: about a quarter less CPU); this machine's own target was vetted as
# it is by check, and vet reuses that result from the build cache.
cross:
	@set -e; host=$$($(GO) env GOOS)/$$($(GO) env GOARCH); for t in $(CROSS); do \
	  flags=; [ $$t = $$host ] || flags='-gcflags=all=-N -l'; \
	  echo "vet $$t $$flags"; GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) vet $${flags:+"$$flags"} $(PKGS); \
	  echo "build $$t"; GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build $${flags:+"$$flags"} $(PKGS); \
	done

# Only the integration tests call t.Parallel, and only those that mostly wait
# (integration/harness_test.go): -parallel lets four of them wait at once
# instead of GOMAXPROCS (two on the CI machine).
unit:
	$(GO) test -race -count=1 -timeout 15m -parallel 4 $(PKGS)

# Each fuzz target for a short while: every package with a `func Fuzz` in a
# test file is built, and every fuzz target its test binary lists is run, so a
# new target needs no line in this file. go test allows one
# -fuzz target per run and links a fuzz-instrumented test binary for each run;
# here each package's binary is linked once (go test -c -fuzz) and run once per
# target, from the package directory (its testdata/fuzz corpus) and with go
# test's own corpus cache, which saves a link of several seconds per target.
# A run that ends in "context deadline exceeded" without a failing input is
# Go 1.26's own race at the end of -fuzztime (go.dev/issue/75804): run once
# more; any other failure, or a failing input, fails.
fuzz:
	@set -e; bins=$$(mktemp -d); trap 'rm -rf "$$bins"' EXIT; \
	cache=$$($(GO) env GOCACHE)/fuzz; \
	for dir in $$(grep -rl --include='*_test.go' --exclude-dir=node_modules '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  pkg=$$(cd $$dir && $(GO) list -f '{{.ImportPath}}' .); bin=$$bins/$$(echo $$pkg | tr / _).test; \
	  $(GO) test -c -fuzz=. -o $$bin $$dir; \
	  for fn in $$($$bin -test.list '^Fuzz'); do \
	    log=$$bins/log; \
	    for try in 1 2; do \
	      echo "fuzz $$dir $$fn ($(FUZZTIME))"; \
	      if (cd $$dir && $$bin -test.run='^$$' -test.fuzz="^$$fn$$" -test.fuzztime=$(FUZZTIME) \
	          -test.fuzzcachedir=$$cache/$$pkg -test.timeout=10m) >$$log 2>&1; then cat $$log; break; fi; \
	      cat $$log; \
	      if [ $$try = 1 ] && grep -q 'context deadline exceeded' $$log && ! grep -q 'Failing input written' $$log; then \
	        echo "fuzz $$fn: Go 1.26's -fuzztime deadline race (go.dev/issue/75804, fixed in 1.27), no failing input: once more"; \
	        continue; \
	      fi; \
	      exit 1; \
	    done; \
	  done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./server/

# A short load run against a server started here on a spare loopback port
# (bounded: 10 s of publishing); see BENCHMARKS.md for bigger runs.
LOADPORT ?= 5799
load: build
	@bin/stardust -c cmd/stardust-load/loadtest.toml --listen 127.0.0.1:$(LOADPORT) --log-level warn & pid=$$!; \
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

# Release builds: static Linux binaries cross-compiled for each of ARCHES,
# the Debian packages (cmd/stardust-pkg, with nfpm) and, for make dist, plain
# tar.gz archives and SHA256SUMS, all in $(DIST). Files carry the commit's
# date, so that one commit builds the same packages again.
DIST              ?= dist
ARCHES            ?= amd64 arm64
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
RELEASE_LDFLAGS   := -s -w $(LDFLAGS)

deb:
	@set -e; mkdir -p $(DIST)/build; \
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/stardust --man > $(DIST)/build/stardust.1; \
	for arch in $(ARCHES); do \
	  echo "stardust $(VERSION) linux/$$arch"; \
	  GOOS=linux GOARCH=$$arch CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(RELEASE_LDFLAGS)" \
	    -o $(DIST)/build/linux_$$arch/stardust ./cmd/stardust; \
	  SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./cmd/stardust-pkg --arch $$arch --version "$(VERSION)" \
	    --binary $(DIST)/build/linux_$$arch/stardust --man $(DIST)/build/stardust.1 --out $(DIST) \
	    --modcache "$$($(GO) env GOMODCACHE)" --goroot "$$($(GO) env GOROOT)"; \
	done

# From an empty $(DIST), so that SHA256SUMS lists this build only.
dist:
	rm -rf $(DIST)
	@$(MAKE) --no-print-directory deb
	@set -e; for arch in $(ARCHES); do \
	  name=stardust_$(VERSION)_linux_$$arch; stage=$(DIST)/build/$$name; \
	  rm -rf $$stage; mkdir -p $$stage/conf; \
	  cp $(DIST)/build/linux_$$arch/stardust $(DIST)/build/stardust.1 README.md $$stage/; \
	  cp -R docs $$stage/; \
	  cp -R conf/*.toml conf/nginx conf/apache2 conf/systemd $$stage/conf/; \
	  tar -C $(DIST)/build --sort=name --owner=0 --group=0 --numeric-owner \
	    --mtime=@$(SOURCE_DATE_EPOCH) -cf - $$name | gzip -9n > $(DIST)/$$name.tar.gz; \
	  echo $(DIST)/$$name.tar.gz; \
	done; \
	cd $(DIST) && sha256sum *.deb *.tar.gz > SHA256SUMS && echo $(DIST)/SHA256SUMS

# The table of issues 8 and 20: Faye's Node server (installed from the
# committed lock file), Centrifugo (built from the Go module proxy into a cache
# folder, once; if that fails its runs are skipped, loudly, and the rest goes
# on), Stardust and the bare net/http floor under the same loads, one at a
# time, each server pinned to CPU 0 (GOMAXPROCS=1) and the load tool to CPU 1.
# About 30 runs of COMPARE_DURATION each plus set-up (some 15 minutes at 20s);
# COMPARE_ROWS picks rows by key (lp1000 api1000 held5000 held100 ws1000
# ws5000 sse1000 sse5000 idle10000; e.g. COMPARE_ROWS='lp1000|ws1000'),
# COMPARE_ROUNDS repeats the table, interleaved (the ratios take medians).
# `make compare-big` runs the three rows of one message to 18,000 held
# clients (the load tool in three processes; some 5 minutes).
COMPARE_DURATION ?= 20s
COMPARE_ROWS     ?=
COMPARE_ROUNDS   ?= 1
COMPARE_PORT     ?= 5850
CENTRIFUGO_VERSION := v6.9.1
CENTRIFUGO_DIR   ?= $(HOME)/.cache/stardust-compare/centrifugo-$(CENTRIFUGO_VERSION)
compare: compare-tools
	@ulimit -n 20000 2>/dev/null || ulimit -n $$(ulimit -Hn); \
	bin/stardust-compare --duration $(COMPARE_DURATION) --rounds $(COMPARE_ROUNDS) --port $(COMPARE_PORT) --rows '$(COMPARE_ROWS)' \
	  --centrifugo '$(if $(filter no,$(COMPARE_CENTRIFUGO)),,$(CENTRIFUGO_DIR)/centrifugo)' --json bin/compare.json

compare-big: compare-tools
	@ulimit -n 20000 2>/dev/null || ulimit -n $$(ulimit -Hn); \
	bin/stardust-compare --duration 10s --port $(COMPARE_PORT) --rows 'big18000' \
	  --centrifugo $(CENTRIFUGO_DIR)/centrifugo --json bin/compare-big.json

# One message to 100,000 held long polls over six stardust processes sharing
# one redis-server (issue 21; BENCHMARKS.md section 15). About 6 minutes,
# bounded; CLIENTS, NODES, PROCS, RAMP, HOLD: see the script.
scale-100k:
	scripts/scale-100k.sh

compare-tools: build node-deps centrifugo
	$(GO) build -o bin/stardust-floor ./cmd/stardust-floor
	$(GO) build -o bin/stardust-load ./cmd/stardust-load
	$(GO) build -o bin/stardust-compare ./cmd/stardust-compare

# Centrifugo for the comparison, built once into CENTRIFUGO_DIR (outside the
# tree: it is not ours); a failed build is said loudly and does not stop
# `make compare`.
# COMPARE_CENTRIFUGO=no leaves Centrifugo out (no build; its rows say
# skipped): the tests' short run of make compare uses it.
COMPARE_CENTRIFUGO ?= yes
centrifugo:
	@if [ "$(COMPARE_CENTRIFUGO)" = no ]; then echo "centrifugo: left out (COMPARE_CENTRIFUGO=no): make compare SKIPS its runs"; \
	elif [ -x $(CENTRIFUGO_DIR)/centrifugo ]; then echo "centrifugo $(CENTRIFUGO_VERSION): $(CENTRIFUGO_DIR)/centrifugo"; \
	elif (cd / && GOBIN=$(CENTRIFUGO_DIR) $(GO) install github.com/centrifugal/centrifugo/v6@$(CENTRIFUGO_VERSION)); then \
	  echo "centrifugo $(CENTRIFUGO_VERSION) built in $(CENTRIFUGO_DIR)"; \
	else echo "*** centrifugo $(CENTRIFUGO_VERSION) did not build: make compare SKIPS its runs ***"; fi

clean:
	rm -rf bin $(DIST)
