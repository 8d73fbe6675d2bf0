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
CONFIG ?= cpu

.PHONY: help venv lab release book browser test test-fast check grade bench-grading bench-check data train lock clean

help:
	@echo "make venv           create .venv with the pinned requirements and the course package"
	@echo "make lab            JupyterLab on the exercises notebooks"
	@echo "make release        regenerate notebooks/ (learner notebooks) from solutions/ with nbgrader"
	@echo "make book           build the HTML book into _build/html"
	@echo "make test           the project's test suite (includes a book build)"
	@echo "make check NB=notebooks/04_attention.ipynb   grade one notebook with the hidden tests"
	@echo "make grade CHAPTER=04_attention SUBMISSIONS=dir OUT=dir   grade a class"
	@echo "make bench-grading  time class grading against plain serial nbgrader"
	@echo "make bench-check    time one learner's check against running the notebook alone, and plain nbgrader"
	@echo "make data           build data/corpus.txt (chapter 7)"
	@echo "make train CONFIG=cpu|gpu   train chapter 7's reference GPT"

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (course)" >/dev/null
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

# The browser test opens the built book in Debian's Chromium (no browser downloads); installed here when missing.
browser:
	@command -v chromium >/dev/null && fc-list :lang=ko | grep -q . || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-nanum >/dev/null; }

test: venv data $(MATHJAX) browser
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test-fast: venv
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not book and not browser"

check: venv
	$(BIN)/python -m autograder check $(NB)

grade: venv
	$(BIN)/python -m autograder grade $(CHAPTER) $(SUBMISSIONS) --out $(OUT)

bench-grading: venv
	$(BIN)/python benchmarks/grading.py

bench-check: venv
	$(BIN)/python benchmarks/check.py

data: venv
	$(BIN)/python -m gpt.data

train: data
	$(BIN)/python -m gpt.train --config $(CONFIG)

clean:
	rm -rf _build book/_generated .grading
