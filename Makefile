# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# System packages, installed only when missing (needs root, as on CI): what Qt needs offscreen, what its xcb
# platform needs on a real X display (`kbh annotate` on a desktop), and Xvfb + xdotool for the test that starts
# the real app on an X display and draws with real mouse events.
QT_LIBS := libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0 \
           libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 \
           libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 libxcb-xinerama0 libxcb-xkb1 \
           xvfb xdotool

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
	$(BIN)/kbh demo --out demo_out

test: install
	$(BIN)/lint-imports  # the dependency rule (pyproject.toml [tool.importlinter])
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -rs -n 2 --durations=15

bench: install
	$(BIN)/kbh bench split

clean:
	rm -rf $(VENV) demo_out
