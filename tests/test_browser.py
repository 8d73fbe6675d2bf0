"""The book as readers meet it: every built page opened in headless Chromium.

The book is built before pytest starts (`make book-record`, see tests/book_build.py), served from 127.0.0.1 by a
thread, and every HTML page is opened in Debian's `chromium` driven by Playwright. Nothing leaves the machine: requests
to any other host are blocked and reported. Each page must load without console errors, render all of its math with
MathJax, load all of its images (with alt text), link only to pages that exist, and, for notebook pages, offer the
notebook as a download and launch buttons that open the committed learner notebook. Screenshots land in
`_build/screenshots/`.
"""
from __future__ import annotations

import functools
import json
import os
import re
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from autograder.course import REPO
from book_build import HTML, recorded

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = REPO / "_build" / "screenshots"
# Only for working on this test: BOOK_HTML=path/to/html opens an existing build instead of `make book-record`'s.
PREBUILT = os.environ.get("BOOK_HTML")
if PREBUILT:
    HTML = Path(PREBUILT).resolve()
CHAPTER4 = "book/04_attention.html"
MATHJAX_TIMEOUT_MS = 30_000
REDIRECT = re.compile(r'<meta[^>]+http-equiv="refresh"[^>]+url=([^"]+)"', re.I)

# Runs in the page once MathJax (if any) has finished: everything the checks need, as plain data.
INSPECT = r"""
async () => {
  const out = {};
  const mathNodes = document.querySelectorAll('.math, span.math, div.math');
  out.hasMathJax = !!(window.MathJax && window.MathJax.startup);
  out.mathCount = mathNodes.length;
  // math MyST recognised but MathJax did not typeset
  out.untypeset = Array.from(mathNodes).filter(n => !n.querySelector('mjx-container'))
                       .map(n => n.textContent.trim().slice(0, 80));
  // TeX errors MathJax rendered in red
  out.mathErrors = Array.from(document.querySelectorAll('mjx-merror'))
                        .map(n => (n.getAttribute('data-mjx-error') || n.textContent).slice(0, 120));
  // $...$ or $$...$$ left in the reading text (MyST did not recognise it as math)
  const skip = 'pre, code, script, style, textarea, kbd, samp, mjx-container, .math, .highlight, .MathJax';
  const walker = document.createTreeWalker(document.querySelector('main') || document.body, NodeFilter.SHOW_TEXT);
  const pieces = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (parent && !parent.closest(skip)) pieces.push(node.textContent);
  }
  const text = pieces.join(' ');
  const raw = text.match(/\$\$[\s\S]+?\$\$|\$[^\s$](?:[^$\n]{0,200}?[^\s$])?\$/g) || [];
  out.rawMath = raw.map(s => s.slice(0, 80));
  // images: loaded? alt text?
  out.images = Array.from(document.images).map(img => ({
    src: img.currentSrc || img.src, alt: img.getAttribute('alt'), ok: img.complete && img.naturalWidth > 0,
    content: !!img.closest('main article, article.bd-article, .bd-article'),
  }));
  out.links = Array.from(document.querySelectorAll('a[href]')).map(a => a.href);
  out.ids = Array.from(document.querySelectorAll('[id]')).map(e => e.id)
               .concat(Array.from(document.querySelectorAll('a[name]')).map(a => a.name));
  out.downloads = Array.from(document.querySelectorAll('.dropdown-download-buttons a[href]')).map(a => a.href);
  out.launches = Array.from(document.querySelectorAll('.dropdown-launch-buttons a[href]'))
                      .map(a => ({text: a.textContent.trim(), href: a.href}));
  out.repoButton = !!document.querySelector('a[href*="github.com"] .fa-github, a.btn[href*="github.com"]');
  out.searchBox = !!document.querySelector('form.bd-search, .search-button, #pst-search-dialog form, input[name="q"]');
  return out;
}
"""

# True when Hangul in the page's own font renders differently from a character no font has (tofu) and from nothing.
HANGUL_RENDERS = r"""
() => {
  const canvas = document.createElement('canvas');
  canvas.width = 120; canvas.height = 48;
  const g = canvas.getContext('2d');
  const family = getComputedStyle(document.querySelector('main') || document.body).fontFamily;
  const draw = s => { g.clearRect(0, 0, 120, 48); g.font = `32px ${family}`; g.fillText(s, 4, 38);
                      return Array.from(g.getImageData(0, 0, 120, 48).data).join(','); };
  const hangul = draw('배'), tofu = draw('\uE000'), tofu2 = draw('\u0378'), blank = draw('');
  return hangul !== tofu && hangul !== tofu2 && hangul !== blank;
}
"""


@dataclass
class PageReport:
    url: str
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    math_problems: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (signature from the base class)
        pass


def pages(html: Path) -> list[str]:
    """Every page of this build: the documents Sphinx indexed (searchindex.js; a page left in _build/html by an
    earlier build of a different table of contents is not one), plus the pages Sphinx generates."""
    index = (html / "searchindex.js").read_text(encoding="utf-8")
    docnames = json.loads(re.search(r'"docnames":\s*(\[[^\]]*\])', index).group(1))
    generated = [name for name in ("index.html", "genindex.html", "search.html") if (html / name).exists()]
    return sorted(f"{name}.html" for name in docnames) + generated


def chromium_or_skip():
    if Path(CHROMIUM).exists():
        return
    reason = (f"{CHROMIUM} is not installed (Debian package `chromium`; `make browser` installs it); "
              "the browser test needs it")
    if os.environ.get("CI"):
        pytest.fail(reason + " and CI is set, so this is a failure, not a skip")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def site():
    chromium_or_skip()
    if not PREBUILT:
        record = recorded()
        assert record.ok, record.failure()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(HTML)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser(site, tmp_path_factory):
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900}, color_scheme="light",
            service_workers="block")
        context.external = []  # requests to anything but our server: blocked, and a failure

        def only_local(route):
            url = route.request.url
            if url.startswith(site) or url.startswith(("data:", "blob:")):
                route.continue_()
            else:
                context.external.append(url)
                route.abort()

        context.route("**/*", only_local)
        try:
            yield context
        finally:
            context.close()


def open_page(context, url: str, report: PageReport | None = None):
    page = context.new_page()
    if report is not None:
        page.on("console", lambda msg: msg.type == "error" and report.console_errors.append(
            f"{msg.text} ({msg.location.get('url', '')})"))
        page.on("pageerror", lambda error: report.console_errors.append(f"uncaught: {error}"))
        page.on("requestfailed", lambda request: report.failed_requests.append(
            f"{request.url} ({request.failure})"))
        page.on("response", lambda response: response.status >= 400 and report.failed_requests.append(
            f"{response.url} (HTTP {response.status})"))
    page.goto(url, wait_until="load")
    if page.evaluate("() => document.querySelectorAll('.math').length > 0"):
        try:
            page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                   timeout=MATHJAX_TIMEOUT_MS)
            page.evaluate("() => MathJax.startup.promise.then(() => true)")
        except PlaywrightTimeout:
            if report is not None:
                report.math_problems.append(f"MathJax did not start within {MATHJAX_TIMEOUT_MS // 1000} s")
    return page


@pytest.fixture(scope="module")
def visits(site, browser) -> dict[str, PageReport]:
    reports = {}
    for name in pages(HTML):
        report = PageReport(site + name)
        redirect = REDIRECT.search((HTML / name).read_text(errors="replace")[:2000])
        if redirect:  # index.html: a redirect to the intro page; its target is checked like a link
            target = urljoin(report.url, redirect.group(1))
            report.data = {"links": [target], "ids": [], "images": [], "downloads": [], "launches": [],
                           "mathCount": 0, "hasMathJax": False, "untypeset": [], "mathErrors": [], "rawMath": []}
            reports[name] = report
            continue
        page = open_page(browser, report.url, report)
        report.data = page.evaluate(INSPECT)
        if name == CHAPTER4:
            report.data["hangul"] = page.evaluate(HANGUL_RENDERS)
        page.close()
        reports[name] = report
    return reports


def fail_with(problems: list[str], what: str):
    if problems:
        shown = "\n  ".join(problems[:40])
        more = f"\n  ... and {len(problems) - 40} more" if len(problems) > 40 else ""
        pytest.fail(f"{len(problems)} {what}:\n  {shown}{more}")


def test_every_toc_page_was_opened(visits):
    from test_book import toc_files

    if PREBUILT:
        pytest.skip("BOOK_HTML: an existing build, perhaps of a reduced table of contents")

    missing = [f"{page}.html" for page in toc_files() if f"{page}.html" not in visits]
    assert not missing, f"pages in _toc.yml not in the built book: {missing}"


def test_no_console_errors(visits):
    fail_with([f"{name}: {error}" for name, r in visits.items() for error in r.console_errors],
              "console errors (JavaScript errors, or resources that failed to load)")


def test_nothing_is_fetched_from_the_network(visits, browser):
    fail_with(sorted(set(browser.external)), "requests to other hosts (the book must work offline)")


def test_every_resource_loads(visits):
    fail_with([f"{name}: {failure}" for name, r in visits.items() for failure in r.failed_requests],
              "resources that failed to load")


def test_math_is_rendered(visits):
    problems = []
    for name, r in visits.items():
        d = r.data
        problems += [f"{name}: {problem}" for problem in r.math_problems]
        if d["mathCount"] and not d["hasMathJax"]:
            problems.append(f"{name}: {d['mathCount']} math elements but MathJax is not on the page")
        problems += [f"{name}: not typeset by MathJax: {s!r}" for s in d["untypeset"]]
        problems += [f"{name}: MathJax error: {s!r}" for s in d["mathErrors"]]
        problems += [f"{name}: raw TeX left in the text: {s!r}" for s in d["rawMath"]]
    fail_with(problems, "math problems")


def test_images_load_and_have_alt_text(visits):
    problems = []
    for name, r in visits.items():
        for img in r.data["images"]:
            if not img["ok"]:
                problems.append(f"{name}: image does not load: {img['src']}")
            elif img["content"]:
                alt = (img["alt"] or "").strip()
                if not alt or re.search(r"\.(png|jpe?g|svg|gif)$", alt, re.I):
                    problems.append(f"{name}: image without alt text (alt={alt!r}): {img['src']}")
    fail_with(problems, "image problems")


def _fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


def test_internal_links_resolve(site, visits):
    ids = {r.url: set(r.data["ids"]) for r in visits.values()}
    sources: dict[str, str] = {}
    for name, r in visits.items():
        for href in r.data["links"]:
            if href.startswith(site):
                sources.setdefault(href, name)
    problems = []
    status = {}
    for href, name in sorted(sources.items()):
        target, fragment = urldefrag(href)
        if target not in status:
            status[target] = _fetch(target)[0]
        if status[target] != 200:
            problems.append(f"{name}: link to {target[len(site):]} gives HTTP {status[target]}")
        elif fragment and target in ids and unquote(fragment) not in ids[target]:
            problems.append(f"{name}: link to {href[len(site):]}: no element with id {fragment!r} on that page")
    fail_with(problems, "broken internal links")


def _notebook_pages(visits):
    return {name: r for name, r in visits.items()
            if name.startswith("notebooks/") or name.startswith("book/_generated/solutions/")}


def test_notebook_pages_offer_the_notebook_for_download(site, visits):
    notebook_pages = _notebook_pages(visits)
    assert any(name.startswith("notebooks/") for name in notebook_pages), "no learner notebook pages were built"
    problems = []
    for name, r in notebook_pages.items():
        ipynbs = [href for href in r.data["downloads"] if urlsplit(href).path.endswith(".ipynb")]
        if not ipynbs:
            problems.append(f"{name}: no .ipynb download button")
            continue
        status, body = _fetch(ipynbs[0])
        try:
            nb = json.loads(body)
            sources = "".join("".join(c.get("source", "")) for c in nb["cells"])
        except (ValueError, KeyError, TypeError):
            problems.append(f"{name}: the download {ipynbs[0][len(site):]} is not a notebook (HTTP {status})")
            continue
        if "BEGIN HIDDEN TESTS" in sources or "autograder.checks" in sources:
            problems.append(f"{name}: the downloadable notebook contains the hidden tests")
        if name.startswith("notebooks/") and "NotImplementedError" not in sources:
            problems.append(f"{name}: the downloadable notebook is not the learner version (no NotImplementedError)")
    fail_with(problems, "notebook download problems")


def test_launch_buttons_open_committed_learner_notebooks(visits):
    problems = []
    for name, r in visits.items():
        launches = r.data["launches"]
        if name.startswith("notebooks/"):
            kinds = {link["text"] for link in launches}
            for kind in ("Binder", "Colab", "JupyterHub"):
                if kind not in kinds:
                    problems.append(f"{name}: no {kind} launch button")
        for link in launches:
            match = re.search(r"notebooks(?:/|%2F)(\d\d_[a-z0-9_]+\.ipynb)", link["href"])
            if not match:
                problems.append(f"{name}: {link['text']} opens {link['href']}, not a learner notebook")
            elif not (REPO / "notebooks" / match.group(1)).exists():
                problems.append(f"{name}: {link['text']} opens notebooks/{match.group(1)}, which does not exist")
    fail_with(problems, "launch button problems")


def test_reader_features(visits):
    intro = visits.get("book/intro.html")
    assert intro is not None, "book/intro.html was not built"
    assert intro.data["repoButton"], "no repository button on the intro page"
    assert intro.data["searchBox"], "no search on the intro page"


def test_search_finds_attention(site, browser, visits):
    page = open_page(browser, site + "search.html?q=attention")
    try:
        page.wait_for_selector("#search-results ul.search li, ul.search li", timeout=20_000)
        hits = page.eval_on_selector_all("ul.search li a", "links => links.map(a => a.href)")
    finally:
        page.close()
    assert any("04_attention" in hit for hit in hits), f"searching 'attention' does not find chapter 4: {hits[:5]}"


def test_screenshots(site, browser, visits):
    """Screenshots for a person to look at, and Hangul rendered with a real font (not boxes)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = open_page(browser, site + "book/intro.html")
    page.screenshot(path=str(SCREENSHOTS / "intro.png"))
    page.close()
    page = open_page(browser, site + CHAPTER4)
    page.screenshot(path=str(SCREENSHOTS / "04_attention.png"))
    table = page.locator("table", has_text="배가 아프다").first
    table.scroll_into_view_if_needed()
    table.screenshot(path=str(SCREENSHOTS / "04_attention_hangul_table.png"))
    # the three heatmaps of the causal-mask section: the first output image of a cell that calls heatmap(
    heatmap = page.locator("div.cell", has_text="heatmap(axes[0]").locator("img")
    if not heatmap.count():  # the chapter's code changed: any figure will do for the dark-mode check
        heatmap = page.locator(".cell_output img")
    assert heatmap.count(), "chapter 4 shows no figure (were its code cells executed?)"
    heatmap = heatmap.first
    heatmap.scroll_into_view_if_needed()
    heatmap.screenshot(path=str(SCREENSHOTS / "04_attention_heatmap.png"))
    page.evaluate("() => { document.documentElement.dataset.theme = 'dark';"
                  " document.documentElement.dataset.mode = 'dark'; }")
    heatmap.locator("xpath=ancestor::div[contains(@class,'cell')][1]").screenshot(
        path=str(SCREENSHOTS / "04_attention_heatmap_dark.png"))
    background, dimmed = heatmap.evaluate(
        "img => [getComputedStyle(img).backgroundColor, getComputedStyle(img).filter]")
    page.close()
    assert visits[CHAPTER4].data.get("hangul"), (
        "Hangul text on the chapter 4 page renders as empty boxes: no Korean font (Debian package fonts-nanum)")
    assert background in ("rgb(255, 255, 255)", "rgba(255, 255, 255, 1)"), (
        f"in dark mode a figure's background is {background}, not white (see _static/custom.css)")
    assert dimmed == "none", f"in dark mode figures are drawn through a filter ({dimmed}), not as drawn"
    for name in ("intro.png", "04_attention.png", "04_attention_hangul_table.png", "04_attention_heatmap.png",
                 "04_attention_heatmap_dark.png"):
        assert (SCREENSHOTS / name).stat().st_size > 5_000, f"screenshot {name} is (nearly) empty"
