# Transformers from scratch: the single entry point. Every target sets up what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# nbgrader runs `alembic` from PATH, and notebooks run in the venv's kernel: put the venv first.
export PATH := $(abspath $(BIN)):$(PATH)
export PYTHONHASHSEED := 0

STAMP := $(VENV)/.installed
# MathJax lives outside _static/ (jupyter-book would add every .js there to every page); _config.yml copies it
# into the built book's _static/mathjax/ with html_extra_path.
MATHJAX := _mathjax/_static/mathjax/tex-chtml.js
# make train: CONFIG empty = gpt/configs.py's DEFAULT_CONFIG; NPROC > 1 = that many data-parallel processes (torchrun).
CONFIG ?=
NPROC ?= 1

.PHONY: help venv sandbox lab release book book-record browser test test-fast check grade bench-grading bench-check \
        bench-train data train lock clean ablation

help:
	@echo "make venv           create .venv with the pinned requirements and the course package"
	@echo "make lab            JupyterLab on the exercises notebooks"
	@echo "make release        regenerate notebooks/ (learner notebooks) from solutions/ with nbgrader"
	@echo "make book           build the HTML book into _build/html"
	@echo "make test           the project's test suite (after make book-record: one book build, checked by the tests)"
	@echo "make test-fast      the unit tests only (seconds: no kernel, no book)"
	@echo "make check NB=notebooks/04_attention.ipynb   grade one notebook with the hidden tests"
	@echo "make grade CHAPTER=04_attention SUBMISSIONS=dir OUT=dir   grade a class"
	@echo "make bench-grading  time class grading against plain serial nbgrader"
	@echo "make bench-train    the default CPU recipe against nanoGPT's (loss, wall time), and next to a busy process"
	@echo "make bench-check    time one learner's check against running the notebook alone, and plain nbgrader"
	@echo "make data           build data/corpus.txt (chapter 7)"
	@echo "make train [CONFIG=cpu-fast|cpu|gpu] [NPROC=1]   train chapter 7's reference GPT (NPROC>1: torchrun, DDP)"
	@echo "make ablation       chapter 9: train a GPT-2 block and a Llama block, write book/data/ablation_llama.json"

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@# ipykernel stages the kernel spec in a temp folder it never removes: give it one that is removed here
	tmp=$$(mktemp -d) && TMPDIR=$$tmp $(BIN)/python -m ipykernel install --sys-prefix --name python3 \
	  --display-name "Python 3 (course)" >/dev/null; status=$$?; rm -rf "$$tmp"; exit $$status
	touch $@

lab: venv
	$(BIN)/jupyter lab notebooks/

lock: venv
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^torch==' | \
	  (echo "# Fully pinned environment for the course (make venv installs exactly this)."; \
	   echo "# Direct dependencies are listed in requirements.in; regenerate with 'make lock'."; \
	   echo "torch==2.13.0"; cat) > requirements.txt

release: venv
	$(BIN)/python -m autograder release --all

$(MATHJAX):
	@# MathJax from the npm registry, served with the book so it works offline.
	rm -rf _mathjax .mathjax-tmp && mkdir -p _mathjax/_static .mathjax-tmp
	cd .mathjax-tmp && npm pack --silent mathjax@3.2.2 >/dev/null && tar xzf mathjax-3.2.2.tgz
	mv .mathjax-tmp/package/es5 _mathjax/_static/mathjax && rm -rf .mathjax-tmp

book: venv release data $(MATHJAX)
	@rm -rf _static/mathjax  # the old location: under _static/ every MathJax file would load on every page
	$(BIN)/python -m autograder book-solutions
	$(BIN)/jupyter-book build . --builder html -W --keep-going

# make test's book, built before pytest starts: `make book` twice (the second must execute nothing), each build's log
# and the checkout's state before and after in _build/book-record/, which tests/test_book.py reads (it never builds).
book-record: venv data $(MATHJAX)
	$(BIN)/python tests/book_build.py

# The browser test opens the built book in Debian's Chromium (no browser downloads); installed here when missing.
browser:
	@command -v chromium >/dev/null && fc-list :lang=ko | grep -q . || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-nanum >/dev/null; }

# The learners' code runs inside bubblewrap (Debian/Ubuntu package `bubblewrap`). Installed here when missing and we
# can (root); elsewhere `check` runs without it and says so, and `grade` refuses unless told --allow-unsandboxed.
sandbox:
	@command -v bwrap >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	  else echo "note: bubblewrap (bwrap) is not installed: learners' code will run unsandboxed." \
	            "Install it with your package manager (Debian/Ubuntu: sudo apt-get install bubblewrap)."; fi; }

# --dist loadscope: tests/conftest.py makes a scope a test file, or a chapter (each chapter's graded class is
# shared by its tests; the chapters are spread over the workers).
test: venv sandbox data $(MATHJAX) browser book-record
	$(BIN)/python -m pytest -n 2 --dist loadscope

test-fast: venv
	$(BIN)/python -m pytest -m unit -q

check: venv sandbox
	$(BIN)/python -m autograder check $(NB)

grade: venv sandbox
	$(BIN)/python -m autograder grade $(CHAPTER) $(SUBMISSIONS) --out $(OUT)

bench-grading: venv sandbox
	$(BIN)/python benchmarks/grading.py

bench-train: data
	$(BIN)/python benchmarks/train.py

bench-check: venv
	$(BIN)/python benchmarks/check.py

data: venv
	$(BIN)/python -m gpt.data

train: data
	$(if $(filter-out 1,$(NPROC)),$(BIN)/torchrun --standalone --nproc_per_node=$(NPROC),$(BIN)/python) \
	  -m gpt.train $(if $(CONFIG),--config $(CONFIG))

# Chapter 9's measured ablation (minutes per model on a CPU); the book only plots the JSON it writes.
ablation: data
	$(BIN)/python benchmarks/ablation_llama.py --jobs 2

clean:
	rm -rf _build book/_generated .grading
