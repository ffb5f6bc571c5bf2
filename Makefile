# Recurrent Models from Scratch: the two commands a reader needs are
#   make book   create the environment if missing, execute the notebooks, build the website
#   make test   create the environment if missing, run every test (library, notebooks, book)
# Everything is installed into ./.venv by this file; nothing is installed by hand.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: help env book test test-fast clean
help:
	@echo "make book       build the website (book/_build/html/index.html), executing every notebook"
	@echo "make test       run the whole test suite: rnnkit, notebooks (nbval), book build, browser"
	@echo "make test-fast  only the rnnkit unit tests"
	@echo "make env        create ./.venv and install the project (done automatically by the above)"

# The environment: rebuilt when the dependency list changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@touch $(STAMP)

env: $(STAMP)

# Parts of the build owned by the book and the exercises live next to them.
-include book/book.mk
-include exercises/exercises.mk

test-fast: env
	$(PY) -m pytest tests -m "not book" -q

clean:
	rm -rf book/_build .pytest_cache
