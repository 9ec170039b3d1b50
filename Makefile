# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# Qt needs these shared libraries even offscreen; installed only when missing (needs root, as on CI).
QT_LIBS := libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@missing=""; for p in $(QT_LIBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing system libraries:$$missing"; \
	  (apt-get update -qq && apt-get install -y -qq $$missing) || echo "warning: could not install$$missing"; fi
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# Pin torch first: the CPU wheel on local disk; anything looser pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/python -m kbh.demo --out demo_out

test: install
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -rs -n 2 --durations=15

bench: install
	$(BIN)/python benchmarks/bench_split.py

clean:
	rm -rf $(VENV) demo_out
