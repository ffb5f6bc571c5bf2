"""Every page of the built book works in a real browser, with no network.

The built site (book/_build/html, built once per session by book/tools/bookbuild.py) is served
on a free localhost port and every HTML page is opened in headless Debian Chromium through
Playwright. Any request to a host other than localhost is aborted and recorded. Each page must
then show no console error and no uncaught exception; its equations must be typeset by the
site's own MathJax with no raw TeX left in the visible text; every image must have loaded;
every widget must have rendered from its saved state; and every link inside the book must
point at an existing file and anchor. Screenshots of a few pages are kept in
book/_build/screenshots/.

Chromium comes from Debian (`make browser-deps`), never from `playwright install`.
"""
from __future__ import annotations

import functools
import html.parser
import http.server
import os
import re
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "tools"))
import bookbuild  # noqa: E402

pytestmark = pytest.mark.book

CHROMIUM = bookbuild.CHROMIUM
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCAL_HOSTS = {"localhost", "127.0.0.1"}
SCREENSHOTS = {"intro": "intro.html", "bibliography": "bibliography.html"}  # + the first chapter
PAGE_TIMEOUT_MS = 30_000

# Run inside each page once it has loaded: wait for MathJax and the widgets, load every image,
# then report what the page shows.
INSPECT_JS = r"""
async () => {
  const hasMath = document.querySelector('.math, .MathJax, mjx-container') !== null;
  if (hasMath) {
    const t0 = Date.now();
    while (!(window.MathJax && MathJax.startup && MathJax.startup.promise) && Date.now() - t0 < 20000)
      await new Promise(r => setTimeout(r, 50));
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  }
  const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length;
  if (views) {
    const t0 = Date.now();
    while (document.querySelectorAll('.jupyter-widgets').length === 0 && Date.now() - t0 < 20000)
      await new Promise(r => setTimeout(r, 50));
    await new Promise(r => setTimeout(r, 300));
  }
  const images = Array.from(document.images);
  await Promise.all(images.map(img => {
    if (img.complete && img.naturalWidth > 0) return null;
    img.loading = 'eager';
    return img.decode().catch(() => null);
  }));
  const main = (document.querySelector('main') || document.body).cloneNode(true);
  main.querySelectorAll('pre, code, .highlight, mjx-container, script, style, textarea, .cell_output')
      .forEach(e => e.remove());
  const visible = main.textContent;
  const raw = [];
  for (const token of ['$$', '\\begin{', '\\(', '\\[']) if (visible.includes(token)) {
    const i = visible.indexOf(token);
    raw.push(visible.slice(Math.max(0, i - 40), i + 40).replace(/\s+/g, ' '));
  }
  return {
    hasMath,
    mathjaxVersion: (window.MathJax && MathJax.version) || null,
    mjx: document.querySelectorAll('mjx-container').length,
    mjxErrors: document.querySelectorAll('mjx-merror, [data-mjx-error]').length,
    // the TeX source and MathJax's message of each formula that failed, for the failure report
    mjxErrorTex: (window.MathJax && MathJax.startup && MathJax.startup.document
                  ? Array.from(MathJax.startup.document.math) : [])
      .filter(m => m.typesetRoot && m.typesetRoot.querySelector('mjx-merror, [data-mjx-error]'))
      .map(m => {
        const e = m.typesetRoot.querySelector('[data-mjx-error]');
        return (e ? e.getAttribute('data-mjx-error') : 'error') + ' in: ' + m.math.slice(0, 160);
      }),
    raw,
    images: images.map(img => ({src: img.currentSrc || img.src, width: img.naturalWidth})),
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
    widgetViews: views,
    widgetsRendered: document.querySelectorAll('.jupyter-widgets').length,
  };
}
"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def site() -> Path:
    result = bookbuild.build_once(bookbuild.BOOK)
    if not result.ok:
        pytest.fail(bookbuild.failure_report(result), pytrace=False)
    return result.html


@pytest.fixture(scope="module")
def base_url(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make browser-deps` (installs Debian's chromium), "
                    "or set CHROMIUM=/path/to/chromium", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def site_pages(site: Path) -> list[str]:
    pages = []
    for p in sorted(site.rglob("*.html")):
        rel = p.relative_to(site)
        if rel.parts[0] in ("_static", "_vendor", "_sources", "_images"):
            continue
        pages.append(rel.as_posix())
    return pages


def first_chapter() -> str:
    chapters = [n for n in bookbuild.book_notebooks(ROOT) if n.startswith("chapters/")]
    return f"{chapters[0]}.html" if chapters else ""


@pytest.fixture(scope="module")
def crawl(site, base_url, browser):
    """Open every page once; return what each one requested, logged and showed."""
    blocked: list[tuple[str, str]] = []
    shots_dir = bookbuild.build_dir(bookbuild.BOOK) / "screenshots"
    shots_dir.mkdir(parents=True, exist_ok=True)
    shots = dict(SCREENSHOTS)
    if first_chapter():
        shots["chapter01"] = first_chapter()
    shot_of = {v: k for k, v in shots.items()}

    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    current = {"page": ""}

    def route(r):
        url = urllib.parse.urlsplit(r.request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in LOCAL_HOSTS:
            blocked.append((current["page"], r.request.url))
            r.abort()
        else:
            r.continue_()

    context.route("**/*", route)
    results = {}
    start = time.perf_counter()
    for rel in site_pages(site):
        current["page"] = rel
        page = context.new_page()
        console, errors, bad_responses = [], [], []
        page.on("console", lambda m, c=console: c.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e, c=errors: c.append(str(e)))
        page.on("response", lambda r, c=bad_responses: c.append(f"{r.status} {r.url}")
                if r.status >= 400 else None)
        source = (site / rel).read_text(encoding="utf-8", errors="replace")
        redirect = re.search(r'http-equiv="refresh" content="\d+;\s*url=([^"]+)"', source, re.I)
        page.goto(base_url + rel, wait_until="load", timeout=PAGE_TIMEOUT_MS)
        if redirect:  # index.html sends the reader on to the root page: follow it, check that
            target = urllib.parse.urljoin(base_url + rel, redirect.group(1))
            page.wait_for_url(target, timeout=PAGE_TIMEOUT_MS)
            page.wait_for_load_state("load")
        info = page.evaluate(INSPECT_JS)
        info["redirect"] = redirect.group(1) if redirect else None
        page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)
        if rel in shot_of:
            page.screenshot(path=str(shots_dir / f"{shot_of[rel]}.png"), full_page=True)
        info.update(console=console, errors=errors, bad_responses=bad_responses, url=page.url)
        results[rel] = info
        page.close()
    context.close()
    return {"pages": results, "blocked": blocked, "seconds": time.perf_counter() - start,
            "screenshots": shots_dir}


def test_every_page_was_opened(site, crawl):
    pages = crawl["pages"]
    assert "intro.html" in pages and "bibliography.html" in pages and "search.html" in pages
    for docname in bookbuild.toc_docnames(bookbuild.BOOK):
        assert f"{docname}.html" in pages, docname
    print(f"\nopened {len(pages)} pages in {crawl['seconds']:.1f} s; "
          f"{len(crawl['blocked'])} requests to other hosts blocked")


def test_no_request_leaves_localhost(crawl):
    assert crawl["blocked"] == [], f"requests to other hosts (aborted): {crawl['blocked'][:20]}"


def test_no_console_errors_or_page_errors(crawl):
    problems = {rel: {"console": i["console"], "errors": i["errors"], "http": i["bad_responses"]}
                for rel, i in crawl["pages"].items()
                if i["console"] or i["errors"] or i["bad_responses"]}
    assert not problems, problems


def test_mathjax_typesets_every_equation(crawl):
    pages = crawl["pages"]
    with_math = {rel: i for rel, i in pages.items() if i["hasMath"]}
    assert "notation.html" in with_math, "the notation page is full of math"
    problems = []     # every page's problem, not only the first (one build takes minutes)
    for rel, info in with_math.items():
        if not (info["mathjaxVersion"] and info["mathjaxVersion"].startswith("3.")):
            problems.append(f"{rel}: MathJax version {info['mathjaxVersion']}")
        if info["mjx"] == 0:
            problems.append(f"{rel}: math on the page but nothing typeset")
        if info["mjxErrors"]:
            problems.append(f"{rel}: MathJax reported {info['mjxErrors']} TeX errors: "
                            + "; ".join(info.get("mjxErrorTex") or []))
    assert not problems, problems
    raw = {rel: i["raw"] for rel, i in pages.items() if i["raw"]}
    assert not raw, f"raw TeX left in the visible text: {raw}"


def test_every_image_loads(crawl):
    broken = {rel: [im["src"] for im in i["images"] if im["width"] == 0]
              for rel, i in crawl["pages"].items()}
    broken = {k: v for k, v in broken.items() if v}
    assert not broken, broken


def test_widgets_render_without_a_kernel(crawl):
    for rel, info in crawl["pages"].items():
        if info["widgetViews"]:
            assert info["widgetsRendered"] > 0, f"{rel}: {info['widgetViews']} widget views, none rendered"


class _Anchors(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k == "id" or (tag == "a" and k == "name"):
                self.ids.add(v or "")


@functools.lru_cache(maxsize=None)
def _anchors_of(path: Path) -> frozenset[str]:
    parser = _Anchors()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def test_every_internal_link_resolves(site, base_url, crawl):
    broken = []
    checked = 0
    for rel, info in crawl["pages"].items():
        for href in info["links"]:
            if not href.startswith(base_url):
                continue  # external links (DOIs, arXiv) are plain links: nothing is fetched
            url = urllib.parse.urlsplit(href)
            path = urllib.parse.unquote(url.path)[len(urllib.parse.urlsplit(base_url).path):]
            target = site / path
            if path == "" or path.endswith("/"):
                target = target / "index.html"
            checked += 1
            if not target.is_file():
                broken.append((rel, href, "no such file"))
            elif url.fragment and target.suffix == ".html":
                if urllib.parse.unquote(url.fragment) not in _anchors_of(target):
                    broken.append((rel, href, "no such anchor"))
    assert checked > 0
    assert not broken, broken[:30]


def test_search_works_offline(base_url, browser):
    context = browser.new_context(service_workers="block")
    outside = []
    context.route("**/*", lambda r: (outside.append(r.request.url), r.abort())
                  if urllib.parse.urlsplit(r.request.url).hostname not in LOCAL_HOSTS
                  and r.request.url.startswith("http") else r.continue_())
    page = context.new_page()
    page.goto(base_url + "search.html?q=recurrent", wait_until="load")
    page.wait_for_selector("#search-results ul.search li", timeout=PAGE_TIMEOUT_MS)
    hits = page.locator("#search-results ul.search li").count()
    context.close()
    assert hits > 0 and not outside


def test_screenshots_saved(crawl):
    names = {p.stem for p in crawl["screenshots"].glob("*.png")}
    expected = {"intro", "bibliography"} | ({"chapter01"} if first_chapter() else set())
    assert expected <= names, names
