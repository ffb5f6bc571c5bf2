"""The book website builds with warnings as errors and contains every chapter and exercise.

The build is the one `make book` runs (book/tools/bookbuild.py): every notebook is executed,
and a warning anywhere, or a cell that raises, fails it. One test session builds the book
once; tests/test_browser.py then opens the same build in a browser.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "tools"))
import bookbuild  # noqa: E402

pytestmark = pytest.mark.book

BOOK = ROOT / "book"


@pytest.fixture(scope="module")
def site() -> Path:
    result = bookbuild.build_once(BOOK)
    if not result.ok:
        pytest.fail(bookbuild.failure_report(result), pytrace=False)
    return result.html


def html_of(site: Path, docname: str) -> Path:
    return site / f"{docname}.html"


def chapter_notebooks() -> list[str]:
    return [n for n in bookbuild.book_notebooks(ROOT) if n.startswith("chapters/")]


@pytest.mark.parametrize("docname", bookbuild.book_notebooks(ROOT))
def test_notebook_executes_without_errors(docname):
    """Each chapter and exercise notebook, executed once for the build (what nbval used to do)."""
    result = bookbuild.build_once(BOOK)
    assert docname in result.executed, (f"{docname} was not executed by the build (not in the toc, or "
                                        "the build stopped before executing notebooks)")
    error = result.executed[docname]
    assert error is None, f"{docname} raised while executing:\n{error[-6000:]}"


def test_build_succeeds_with_warnings_as_errors(site):
    assert (site / "index.html").is_file()
    assert (site / "intro.html").is_file()


def test_the_book_has_chapters():
    assert chapter_notebooks(), "chapters/ holds no notebook: the book would have no chapter"


def test_every_notebook_is_in_the_toc():
    """Every notebook directly in chapters/ and exercises/ is named by _toc.yml (student copies aren't)."""
    toc = bookbuild.toc_docnames(BOOK)
    missing = [n for n in bookbuild.book_notebooks(ROOT) if n not in toc]
    assert not missing, f"notebooks missing from book/_toc.yml (its patterns do not match them): {missing}"
    copies = [n for n in toc if n.startswith(("exercises/student/", "exercises/autograder/"))]
    assert not copies, f"student or autograder copies in the toc: {copies}"


@pytest.mark.parametrize("docname", bookbuild.book_notebooks(ROOT))
def test_every_cell_has_an_id(docname):
    """nbformat 4.5 cell ids (a missing one is a MissingIDFieldWarning today, an error in a later
    nbformat); exercise tooling and the execution cache also key on them."""
    import json

    nb = json.loads((ROOT / f"{docname}.ipynb").read_text(encoding="utf-8"))
    missing = [i for i, cell in enumerate(nb["cells"]) if not cell.get("id")]
    assert not missing, f"{docname}: cells {missing} have no id"
    ids = [cell["id"] for cell in nb["cells"]]
    assert len(set(ids)) == len(ids), f"{docname}: duplicate cell ids"


@pytest.mark.parametrize("docname", [n for n in bookbuild.book_notebooks(ROOT) if n.startswith("chapters/")])
def test_no_tag_inside_a_split_block(docname):
    """Sphinx wraps a $$ block whose text holds a line break (\\\\) in \\begin{split}, where MathJax
    refuses \\tag ("\\tag not allowed in split environment", only seen in a browser): such an
    equation is written as a \\begin{equation*} ... \\tag{n.m} \\end{equation*} block instead."""
    import json

    nb = json.loads((ROOT / f"{docname}.ipynb").read_text(encoding="utf-8"))
    bad = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        for block in re.findall(r"\$\$(.+?)\$\$", "".join(cell["source"]), re.S):
            for part in block.split("\n\n"):  # Sphinx wraps each paragraph of the block separately
                if "\\\\" in part and "\\tag" in part:
                    bad.append(f"cell {i}: {part.strip()[:60]!r}")
    assert not bad, f"{docname}: \\tag in a $$ block with line breaks: {bad}"


def test_teaching_pages_are_in_the_toc():
    pages = [f"teaching/{p.stem}" for p in sorted((BOOK / "teaching").glob("*.md"))]
    toc = bookbuild.toc_docnames(BOOK)
    assert not [p for p in pages if p not in toc]
    if pages:  # the teaching part comes after the exercises, before the bibliography
        assert toc.index(pages[0]) > max(toc.index(n) for n in bookbuild.book_notebooks(ROOT))
        assert toc.index(pages[-1]) < toc.index("bibliography")


def test_toc_is_in_book_order():
    toc = bookbuild.toc_docnames(BOOK)
    assert toc[:3] == ["intro", "how_to_run", "notation"]
    assert toc[-1] == "bibliography"
    chapters = [n for n in toc if n.startswith("chapters/")]
    assert chapters == sorted(chapters)
    exercises = [n for n in toc if n.startswith("exercises/")]
    if chapters and exercises:
        assert toc.index(chapters[-1]) < toc.index(exercises[0])


def test_every_notebook_and_page_is_built_and_linked_from_the_navigation(site):
    toc = bookbuild.toc_docnames(BOOK)
    missing = [n for n in toc if not html_of(site, n).is_file()]
    assert not missing, f"pages in the toc without a built page: {missing}"
    nav = (site / "intro.html").read_text(encoding="utf-8")
    unlinked = [n for n in toc[1:] if f'href="{n}.html"' not in nav]
    assert not unlinked, f"pages missing from the sidebar navigation: {unlinked}"


def test_chapter_pages_show_rendered_figures(site):
    """Each chapter was executed: its page holds PNG figures that exist in the build."""
    for docname in chapter_notebooks():
        page = html_of(site, docname)
        text = page.read_text(encoding="utf-8")
        srcs = re.findall(r'<img[^>]+src="([^"]+\.png)"', text)
        assert srcs, f"{page.name}: no PNG figure on the page (was the notebook executed?)"
        for src in srcs:
            assert (page.parent / src).resolve().is_file(), f"{page.name}: missing image {src}"
        assert "cell_output" in text, f"{page.name}: no cell output"


def test_chapters_are_numbered(site):
    """Part I is numbered: its first chapter's title carries '1.' in the sidebar."""
    first = chapter_notebooks()[0]
    nav = (site / "intro.html").read_text(encoding="utf-8")
    link = re.search(rf'<a[^>]*href="{re.escape(first)}\.html"[^>]*>(.*?)</a>', nav, re.S)
    assert link, f"{first} is not linked from the sidebar"
    assert re.match(r"\s*1\.\s", re.sub(r"<[^>]+>", "", link.group(1))), link.group(1)


def test_bibliography_lists_every_entry(site):
    bib = (BOOK / "references.bib").read_text(encoding="utf-8")
    keys = re.findall(r"^@\w+\{([^,\s]+),", bib, re.M)
    assert len(keys) == len(set(keys)), "duplicate BibTeX keys"
    required = ["elman1990finding", "werbos1990backpropagation", "williams1990efficient",
                "bengio1994learning", "pascanu2013difficulty", "hochreiter1997long",
                "gers2000learning", "cho2014learning", "chung2014empirical", "greff2017lstm",
                "jaeger2001echo", "williams1989learning", "kingma2015adam", "le2015simple",
                "arjovsky2016unitary", "karpathy2015visualizing", "sutskever2014sequence",
                "bahdanau2015neural", "gu2020hippo", "gu2022efficiently", "gu2022parameterization",
                "orvieto2023resurrecting", "feng2024were", "de2024griffin", "qin2023hierarchically",
                "gu2023mamba", "sun2023retentive", "katharopoulos2020transformers",
                "behrouz2024titans", "blelloch1990prefix", "voelker2019legendre"]
    assert not [k for k in required if k not in keys]
    page = (site / "bibliography.html").read_text(encoding="utf-8")
    entries = re.findall(r'role="doc-biblioentry"', page)
    assert len(entries) == len(keys), f"{len(entries)} entries on the page, {len(keys)} in references.bib"
    assert "finding structure in time" in page.lower()


def test_no_page_loads_anything_from_outside(site):
    """Static check (the browser test checks what is really requested): no remote scripts,
    stylesheets, fonts or images, and MathJax and the widget manager come from the site."""
    remote = re.compile(r'<(?:script|img|iframe)[^>]+src="(?:https?:)?//[^"]*"'
                        r'|<link[^>]+href="(?:https?:)?//[^"]*"[^>]*>', re.I)
    offenders = {}
    for page in site.rglob("*.html"):
        if "_vendor" in page.parts or "_static" in page.parts:
            continue
        text = page.read_text(encoding="utf-8")
        found = [m for m in remote.findall(text) if 'rel="canonical"' not in m]
        if found:
            offenders[str(page.relative_to(site))] = found[:3]
    assert not offenders, offenders
    intro = (site / "intro.html").read_text(encoding="utf-8")
    assert "_vendor/mathjax/tex-mml-chtml.js" in intro
    assert "thebe" not in intro.lower()
    assert (site / "_vendor" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    assert (site / "searchindex.js").is_file()


def test_widget_pages_carry_their_saved_state(site):
    """A page that shows an ipywidgets view must also carry the widget state, or it shows nothing."""
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        if "application/vnd.jupyter.widget-view+json" in text:
            assert "application/vnd.jupyter.widget-state+json" in text, page
            assert "_vendor/html-manager/embed-amd.js" in text, page
            assert "_vendor/requirejs/require.js" in text, page
