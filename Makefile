# Two commands do all the set-up: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEB_PKGS := bind9-dnsutils knot dnsperf nsd chromium
DEB_CMDS := dig knotd dnsperf nsd chromium
CONFIG ?= geodns.toml
# Every install pins to the versions the suite passed with (see constraints.txt).
PIP_INSTALL := $(BIN)/pip install -q -c constraints.txt
LISTEN ?= --listen 127.0.0.1:5353 --listen [::1]:5353

.PHONY: run demo test venv deps-test debs lint bench bench-debs clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml constraints.txt
	$(PIP_INSTALL) -e '.[test]'
	touch $@

venv: $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/geodns serve --zones zones $(if $(wildcard $(CONFIG)),--config $(CONFIG),--no-config) $(LISTEN)

# Local HTTP backends stand in for the example POPs' health endpoints; kill one and
# watch answers move with dig (see README "Failover demo").
demo: $(VENV)/.installed
	$(BIN)/python tools/demo

# Debian packages the interop tests and the benchmark use; installed only when
# missing and only when we are root (tests that need them skip otherwise).
debs:
	@missing=""; for c in $(DEB_CMDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing Debian packages for:$$missing"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_PKGS) >/dev/null; \
	    systemctl stop knot nsd 2>/dev/null || true; \
	  else echo "not root: missing$$missing, interop tests will skip"; fi; \
	fi

deps-test: $(VENV)/.installed-test debs

test: deps-test
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(VENV)/.installed-test
	$(BIN)/ruff check geodns tests tools tools/bench tools/demo tools/microbench tools/steeringbench tools/tcpabuse tools/amplification tools/workersbench
	$(BIN)/mypy

# Reference servers for the geo benchmark (tools/bench --geo).
BENCH_DEB_PKGS := gdnsd pdns-server pdns-backend-geoip

bench-debs: debs
	@if ! command -v gdnsd >/dev/null 2>&1 || ! command -v pdns_server >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BENCH_DEB_PKGS) >/dev/null; \
	    systemctl stop gdnsd pdns 2>/dev/null || true; \
	  else echo "not root: cannot install $(BENCH_DEB_PKGS)"; fi; \
	fi

# Every mix of tools/bench (static, steered diverse and cache-friendly, random names,
# query-log mix; best of 3 rounds) and the large-zone run (see README "Benchmarks").
bench: $(VENV)/.installed bench-debs
	$(BIN)/python tools/bench --all --rounds 3

clean:
	rm -rf $(VENV) build *.egg-info
