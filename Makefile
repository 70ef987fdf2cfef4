# One-stop set-up: `make demo` runs the main job, `make test` the tests.
# Both create .venv, install torch (TORCH=cuda|cpu, see below), the package with its extras, and the
# Debian data packages when they are missing. Nothing is downloaded at run time.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch: TORCH=cuda (default) is PyPI's build, CUDA libraries included (a fresh venv:
# 6.9 GB, 3.2 GB of it nvidia/), with torchvision for the ResNet trunks; every recipe runs.
# TORCH=cpu is PyTorch's CPU-only build 2.13.0 (0.2 GB wheel), which no allowed registry
# carries: pip takes it from this machine kind's disk (/opt/wheels); elsewhere pip would
# take the CUDA build under the same version. PyPI's torchvision does not import beside
# it, so TORCH=cpu leaves out the `vision` extra (ResNet trunks: the COCO / Flickr30K
# recipes); the emoji demo and Fashion-MNIST need none of it. Pins: pyproject.toml.
TORCH ?= cuda
ifeq ($(TORCH),cpu)
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= text,index,milvus,serve,export,emoji,towers,dev
else
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= vision,text,index,milvus,serve,export,emoji,towers,dev
endif
DEBIAN_DATA := dataset-fashion-mnist fonts-noto-color-emoji unicode-cldr-core
# the browser of the page's end-to-end test (Playwright drives it; no browser download), and
# the C compiler that builds the fused Smooth-AP kernel on first use (retrievalkit/losses/native.py)
DEBIAN_TOOLS := chromium gcc libc6-dev
# Emoji art styles (Iconify JSON sets on npm, pinned; see retrievalkit/data/emoji/styles.py):
# fetched once with `npm pack` into $(EMOJI_STYLES_DIR)/<set>/; a set that cannot be
# fetched is skipped with a one-line message (the emoji data then has fewer styles).
EMOJI_NPM := twemoji@1.2.5 openmoji@1.2.29 fluent-emoji-flat@1.2.6
EMOJI_STYLES_DIR := cache/emoji-styles
STAMP := $(VENV)/.installed

.PHONY: install data-packages demo test lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e '.[$(EXTRAS)]'
	@touch $(STAMP)

data-packages:
	@missing=""; for p in $(DEBIAN_DATA) $(DEBIAN_TOOLS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@for spec in $(EMOJI_NPM); do \
	  name=$${spec%@*}; version=$${spec#*@}; dir=$(EMOJI_STYLES_DIR)/$$name; \
	  [ "$$(cat $$dir/VERSION 2>/dev/null)" = "$$version" ] && continue; \
	  tmp=$$(mktemp -d); \
	  if (cd $$tmp && npm pack --silent @iconify-json/$$spec >/dev/null 2>&1) && mkdir -p $$dir \
	     && tar xzf $$tmp/*.tgz -C $$dir --strip-components=1 package/icons.json package/chars.json package/info.json; then \
	    echo $$version > $$dir/VERSION; echo "emoji style $$name $$version -> $$dir"; \
	  else echo "emoji style $$name: npm pack @iconify-json/$$spec failed; this style is skipped"; fi; \
	  rm -rf $$tmp; \
	done

demo: install data-packages
	$(BIN)/retrievalkit demo --out runs/demo

test: install data-packages
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python benchmarks/losses.py --quick
	$(BIN)/python benchmarks/eval.py --quick
	$(BIN)/python benchmarks/search.py --quick

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
