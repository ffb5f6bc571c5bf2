# Make targets of the book website, included by the top-level Makefile (`-include book/book.mk`),
# which defines PY (the venv's python), VENV and STAMP (the installed-environment stamp).
#
#   make book          execute every notebook and build book/_build/html (warnings are errors)
#   make book-serve    serve the built site on http://localhost:8000
#   make book-assets   install the offline JavaScript (MathJax 3, RequireJS, widget manager)
#   make browser-deps  install Debian's chromium for tests/test_browser.py, if missing
#   make book-clean    remove the built site and the execution cache

BOOK_DIR     := book
BOOK_HTML    := $(BOOK_DIR)/_build/html
BOOK_OFFLINE := $(BOOK_DIR)/_offline/_vendor
BOOK_ASSETS_STAMP := $(BOOK_DIR)/_offline/.installed-stamp
CHROMIUM     ?= /usr/bin/chromium
BOOK_PORT    ?= 8000

.PHONY: book book-assets book-serve browser-deps book-clean

# npm ci installs exactly what book/package-lock.json pins; the files the site needs are then
# copied into book/_offline/_vendor (ignored by git), which _config.yml ships with
# html_extra_path. Redone only when package.json or the lock file change.
BOOK_NPM_STAMP := $(BOOK_DIR)/node_modules/.package-lock.json

$(BOOK_NPM_STAMP): $(BOOK_DIR)/package.json $(BOOK_DIR)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "book-assets: npm is needed (Node.js 18 or newer; conda: nodejs, Debian: apt-get install npm)" >&2; exit 1; }
	cd $(BOOK_DIR) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $@

$(BOOK_ASSETS_STAMP): $(BOOK_NPM_STAMP) $(BOOK_DIR)/tools/widgets-offline.js
	rm -rf $(BOOK_OFFLINE)
	mkdir -p $(BOOK_OFFLINE)/requirejs $(BOOK_OFFLINE)/html-manager
	cp -R $(BOOK_DIR)/node_modules/mathjax/es5 $(BOOK_OFFLINE)/mathjax
	cp $(BOOK_DIR)/node_modules/mathjax/LICENSE $(BOOK_OFFLINE)/mathjax/LICENSE
	cp $(BOOK_DIR)/node_modules/requirejs/require.js $(BOOK_OFFLINE)/requirejs/
	cd $(BOOK_DIR)/node_modules/@jupyter-widgets/html-manager/dist && \
	  cp embed-amd.js *.woff *.woff2 *.ttf *.eot *.svg $(CURDIR)/$(BOOK_OFFLINE)/html-manager/
	cp $(BOOK_DIR)/tools/widgets-offline.js $(BOOK_OFFLINE)/html-manager/widgets-offline.js
	@touch $@

book-assets: $(BOOK_ASSETS_STAMP)

# Chromium for the browser test (playwright drives it; `playwright install` would need the
# network). Installed from Debian with apt-get, as root or through sudo.
browser-deps:
	@if [ -x "$(CHROMIUM)" ]; then \
	  echo "browser-deps: $(CHROMIUM) is installed"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "browser-deps: $(CHROMIUM) is missing and there is no apt-get here. Install Chromium" >&2; \
	  echo "  yourself and run the tests with CHROMIUM=/path/to/chromium." >&2; exit 1; \
	else \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; \
	  elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	  else echo "browser-deps: installing chromium needs root or sudo; run 'apt-get install chromium' as root" >&2; exit 1; fi; \
	  echo "browser-deps: installing Debian's chromium with apt-get"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core && \
	  test -x "$(CHROMIUM)" || { echo "browser-deps: apt-get ran but $(CHROMIUM) is still missing" >&2; exit 1; }; \
	fi

# The build itself is book/tools/bookbuild.py (the tests call the same code): it empties the
# execution cache when rnnkit/ or chapters/results/ changed, runs
#   jupyter-book build book --warningiserror --keep-going
# with RNNKIT_PROGRESS=text, and prints where the site is and how to serve it.
book: $(STAMP) book-assets
	RNNKIT_PROGRESS=text $(PY) $(BOOK_DIR)/tools/bookbuild.py

book-serve:
	@test -f $(BOOK_HTML)/index.html || { echo "book-serve: no $(BOOK_HTML)/index.html yet: run 'make book' first" >&2; exit 1; }
	@echo "Serving the book on http://localhost:$(BOOK_PORT)/ (Ctrl-C stops it)"
	$(if $(wildcard $(PY)),$(PY),python3) -m http.server $(BOOK_PORT) --bind 127.0.0.1 --directory $(BOOK_HTML)

book-clean:
	rm -rf $(BOOK_DIR)/_build
