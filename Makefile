# gm-provider: two commands. `make run` serves, `make test` installs what the tests need and runs them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test check sysdeps fuzz soak bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/gm-provider init
	$(VENV)/bin/gm-provider serve

# Debian packages the tests drive for real: PostgreSQL (the two-host pair) and sblim-wbemcli
# (a third-party CIM client). Installed only when missing and only when we are root.
sysdeps:
	@if [ "$$(id -u)" = 0 ]; then \
	  missing=""; \
	  command -v wbemcli >/dev/null || missing="$$missing sblim-wbemcli"; \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  command -v ping >/dev/null || missing="$$missing iputils-ping"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	else echo "not root: skipping Debian packages (tests needing them will say so)"; fi

check: $(STAMP)
	PY=$(PY) scripts/check

test: $(STAMP) sysdeps check
	$(PY) -m pytest -q -p no:cacheprovider

fuzz: $(STAMP)
	GM_FUZZ_EXAMPLES=100000 $(PY) -m pytest -q -p no:cacheprovider tests/security/test_fuzz_live.py

soak: $(STAMP)
	$(PY) bench/soak.py --minutes 10

bench: $(STAMP)
	$(PY) bench/cim_vs_http.py

clean:
	rm -rf $(VENV) var
