# README's two commands: `make demo` and `make test`. Both install whatever is missing first.
SHELL := /bin/bash
UV ?= uv
PYTHON ?= python3
APT_PACKAGES := ffmpeg espeak-ng chromium bubblewrap fonts-dejavu-core libjemalloc2
PYTEST_ARGS ?=

.PHONY: install system-packages python-env node-env triggers-env demo test lint stack-up stack-down

install: system-packages python-env node-env triggers-env

# ffmpeg/ffprobe render and probe; espeak-ng is the offline voice; chromium runs the web page's
# browser tests (Playwright drives Debian's build: its own download does not work offline); bwrap
# sandboxes each job's media processes (flows/media.py); fonts-dejavu-core is the font the email
# thumbnails draw the prospect's name with (flows/stages/thumbnails.py): a file, not a command;
# libjemalloc2 is the worker's allocator (greetings/stack/manager.py), a file too.
system-packages:
	@missing=""; for cmd in ffmpeg ffprobe espeak-ng chromium bwrap; do command -v $$cmd >/dev/null || missing=1; done; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ] || missing=1; \
	ls /usr/lib/*/libjemalloc.so.2 >/dev/null 2>&1 || missing=1; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES); \
	fi

python-env:
	@command -v $(UV) >/dev/null || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --quiet

# package.json's allowScripts lets npm run the install scripts of esbuild, protobufjs and
# @firebase/util but not re2's, which builds re2 from source with node-gyp for minutes (its
# prebuilt download is out of reach). re2 is optional: superstatic, the Hosting emulator's server,
# falls back to JavaScript's RegExp without it, which only `regex` keys would use (firebase.json has
# none). An npm without allowScripts (npm 10, early 11) ignores the field and still builds it.
node-env:
	@[ -x node_modules/.bin/firebase ] && [ -x node_modules/.bin/esbuild ] && [ -d node_modules/playwright-core ] && [ -d node_modules/firebase ] && [ -d node_modules/axe-core ] && [ -d node_modules/fflate ] \
	  || npm ci --no-audit --no-fund --loglevel=error

# The Functions emulator runs triggers/ from triggers/venv on Python 3.11, like Cloud Functions.
triggers-env:
	@[ -x triggers/venv/bin/functions-framework ] || { \
	  $(UV) venv --quiet --seed --python 3.11 triggers/venv && \
	  $(UV) pip install --quiet --python triggers/venv/bin/python -r triggers/requirements.txt; }

stack-up: install
	$(UV) run greetings stack up

stack-down:
	$(UV) run greetings stack down

demo: install
	$(UV) run greetings demo $(if $(VIDEO),--video "$(VIDEO)") $(if $(NAMES),--names-csv "$(NAMES)")

test: install
	$(UV) run pytest $(PYTEST_ARGS)

lint: python-env
	$(UV) run ruff check flows greetings triggers tests
	$(UV) run ruff format --check flows greetings triggers tests
	$(UV) run mypy
