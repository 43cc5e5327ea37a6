# Anxin: `make demo` runs the gateway with an embedded broker, SQLite and a device simulator;
# `make test` installs what the tests need (Debian packages + a virtualenv) and runs every check.
VENV    ?= .venv
PYTHON  ?= python3
BIN      = $(VENV)/bin
DEB_PKGS = mosquitto influxdb postgresql python3-venv chromium fonts-noto-cjk

.PHONY: demo test check lint typecheck unit bench system-deps venv clean

demo: venv
	$(BIN)/anxin demo

test: system-deps venv lint typecheck
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy

bench: system-deps venv
	$(BIN)/python -m bench.ingest_throughput

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || $(MAKE) system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Installs the real servers the tests start (private instances on free ports, never the system ones),
# and Debian's chromium with CJK fonts for the console's browser tests (driven by Playwright).
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v influxd >/dev/null 2>&1 || missing="$$missing influxdb"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	$(PYTHON) -m venv --help >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	ls /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc >/dev/null 2>&1 || missing="$$missing fonts-noto-cjk"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PKGS) >/dev/null; \
	fi

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
