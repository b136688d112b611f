"""The course's website: `make docs`'s build (warnings are errors), then Chromium reads every page of it.

The site is built once per module into a temporary folder and served on a loopback port; any request to another
host is refused and reported, so the check sees what a reader without internet sees. Screenshots of every page go
to test-artifacts/site/.
"""

from __future__ import annotations

import functools
import http.server
import re
import subprocess
import sys
import threading
import time
import tomllib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# The course order: the landing page, the notebooks, then the reference pages (docs/index.md's toctrees).
ORDER = ["index", *(f"notebooks/{n}" for n in NOTEBOOKS), "glossary", "api", "benchmarks", "CONTRIBUTING"]
SHOTS = ROOT / "test-artifacts" / "site"
REPOSITORY = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The built site: `sphinx-build -W` as `make docs` runs it, into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d", str(out / "doctrees")]
    start = time.monotonic()
    build = subprocess.run([*cmd, "docs", str(out / "html")], cwd=ROOT, capture_output=True, text=True)
    print(f"site built in {time.monotonic() - start:.0f} s")
    assert build.returncode == 0, f"sphinx-build failed (warnings are errors):\n{build.stdout}\n{build.stderr}"
    return out / "html"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(site):
    """The site over HTTP on a free loopback port; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=site))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _Page(HTMLParser):
    """The ids, links and loaded resources of one HTML file."""

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.loads = set(), [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag in ("script", "img", "iframe", "source", "video", "audio") and a.get("src"):
            self.loads.append(a["src"])
        if tag == "link" and a.get("href") and a.get("rel") not in ("canonical",):
            self.loads.append(a["href"])


@functools.cache
def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    return page


def _is_remote(url: str) -> bool:
    return bool(re.match(r"^([a-z][a-z0-9+.-]*:)?//", url, re.I))


# ---- the build, read as files -----------------------------------------------------------------------------------


def test_every_notebook_has_its_page_and_every_page_is_built(site):
    missing = [name for name in ORDER + ["search", "genindex"] if not (site / f"{name}.html").is_file()]
    assert not missing, f"pages missing from the build: {missing}"


def test_no_page_loads_anything_from_another_host(site):
    remote = {
        f"{path.relative_to(site)}: {url}"
        for path in site.rglob("*.html")
        for url in _parse(path).loads
        if _is_remote(url)
    }
    assert not remote, "scripts, styles or images from another host:\n" + "\n".join(sorted(remote))


def test_previous_and_next_follow_the_course_order(site):
    for before, page, after in zip([None, *ORDER[:-1]], ORDER, [*ORDER[1:], None], strict=True):
        html = (site / f"{page}.html").read_text()
        prev = re.search(r'<a class="left-prev"\s+href="([^"]+)"', html)
        nxt = re.search(r'<a class="right-next"\s+href="([^"]+)"', html)
        base = f"http://site/{page}.html"
        got = [urljoin(base, m.group(1)) if m else None for m in (prev, nxt)]
        want = [f"http://site/{p}.html" if p else None for p in (before, after)]
        assert got == want, f"{page}: previous/next are {got}, expected {want}"


def test_each_notebook_page_has_the_colab_badge_and_a_launch_link(site):
    for name in NOTEBOOKS:
        html = (site / "notebooks" / f"{name}.html").read_text()
        colab = REPOSITORY.replace("https://github.com/", "https://colab.research.google.com/github/")
        colab += f"/blob/main/notebooks/{name}.ipynb"
        assert re.search(rf'<a class="reference external" href="{re.escape(colab)}"><img alt="Open In Colab"', html), (
            f"{name}: no Colab badge linking to {colab}"
        )
        assert re.search(rf'href="{re.escape(colab)}"[^>]*\s+class="btn[^"]*"\s+title="Launch on Colab"', html), (
            f"{name}: no 'Launch on Colab' button"
        )


def test_panels_show_a_picture_or_nothing_and_say_how_to_run_them(site):
    for name in NOTEBOOKS:
        html = (site / "notebooks" / f"{name}.html").read_text()
        assert "widget-view+json" not in html and "Loading widget" not in html, f"{name}: a widget box on a static page"
        assert "make lab" in html and "to move its sliders" in html, f"{name}: the panel has no note on running it"


# ---- the site in Chromium ---------------------------------------------------------------------------------------


def _shot_name(url: str, base: str) -> str:
    return url.removeprefix(base).removesuffix(".html").replace("/", "__") or "index"


def _visit(page, url: str):
    """Open `url`; return what went wrong in the browser: console errors, page errors, failed requests."""
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
    response = page.goto(url, wait_until="load", timeout=TIMEOUT_MS)
    assert response is not None and response.ok, f"{url}: HTTP {response and response.status}"
    return problems


MATH_TYPESET = """async () => {
    const maths = [...document.querySelectorAll('.math')];
    if (!maths.length) return {count: 0, bad: []};
    await window.MathJax.startup.promise;
    const bad = maths.filter(m => !m.querySelector('mjx-container') || m.querySelector('mjx-merror'));
    return {count: maths.length, bad: bad.slice(0, 5).map(m => m.textContent.slice(0, 80))};
}"""
IMAGES = """() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"""


@pytest.fixture
def offline(browser, served):
    """A browser context whose requests to any other host are refused, and recorded in `.remote`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    remote: list[str] = []

    def refuse_other_hosts(route):
        if urlsplit(route.request.url).hostname == "127.0.0.1" or route.request.url.startswith(("data:", "file:")):
            route.continue_()
        else:
            remote.append(route.request.url)
            route.abort()

    context.route("**/*", refuse_other_hosts)
    context.remote = remote
    try:
        yield context
    finally:
        context.close()


def test_every_page_loads_cleanly_with_its_images_math_and_links(site, served, offline):
    """A crawl from the landing page over every internal link: no browser errors, every image and formula shown."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    todo, seen, problems, math_pages = [served], set(), [], 0
    while todo:
        url = todo.pop(0)
        if url in seen:
            continue
        seen.add(url)
        page = offline.new_page()
        try:
            found = _visit(page, url)
            page.wait_for_load_state("networkidle", timeout=TIMEOUT_MS)
            math = page.evaluate(MATH_TYPESET)
            math_pages += math["count"] > 0
            found += [f"formula not typeset: {t!r}" for t in math["bad"]]
            found += [f"image not loaded: {src}" for src in page.evaluate(IMAGES)]
            if "Loading widget" in page.inner_text("body"):
                found.append("a 'Loading widget' box")
            name = _shot_name(url, served)
            if not name.startswith("_modules"):
                page.screenshot(path=str(SHOTS / f"{name}.png"))
            figures = page.locator(".cell_output img")
            if figures.count():  # a notebook page: its first figure too
                figures.first.scroll_into_view_if_needed()
                page.screenshot(path=str(SHOTS / f"{name}-figure.png"))
        finally:
            page.close()
        problems += [f"{url}: {p}" for p in found]

        file = site / unquote(urlsplit(url).path.lstrip("/") or "index.html")
        for href in _parse(file).links:
            if _is_remote(href) or href.startswith(("mailto:", "javascript:")):
                continue
            target = urljoin(url, href)
            path, fragment = urlsplit(target).path, urlsplit(target).fragment
            target_file = site / unquote(path.lstrip("/") or "index.html")
            if not target_file.is_file():
                problems.append(f"{url}: broken link {href}")
            elif fragment and target_file.suffix == ".html" and unquote(fragment) not in _parse(target_file).ids:
                problems.append(f"{url}: link {href} to a missing anchor")
            elif target_file.suffix == ".html":
                todo.append(target.split("#")[0].split("?")[0])

    assert not offline.remote, f"requests to other hosts: {sorted(set(offline.remote))[:10]}"
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:40])
    visited = {_shot_name(u, served) for u in seen}
    assert {p.replace("/", "__") for p in ORDER} <= visited, f"pages the crawl never reached: {set(ORDER) - visited}"
    assert math_pages >= len(NOTEBOOKS), f"formulas found on only {math_pages} pages"


def test_a_panel_page_shows_the_note_and_no_widget(served, offline):
    page = offline.new_page()
    try:
        problems = _visit(page, f"{served}notebooks/{NOTEBOOKS[0]}.html")
        note = page.locator(".admonition.note", has_text="to move its sliders").first
        note.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        page.screenshot(path=str(SHOTS / f"notebooks__{NOTEBOOKS[0]}-panel.png"))
        assert note.is_visible() and "make lab" in note.inner_text()
        assert page.locator(".jupyter-widgets, .widget-area").count() == 0
        assert not problems, problems
    finally:
        page.close()


def test_math_renders(served, offline):
    page = offline.new_page()
    try:
        _visit(page, f"{served}notebooks/{NOTEBOOKS[0]}.html")
        page.wait_for_function("() => window.MathJax && window.MathJax.startup && window.MathJax.startup.promise")
        math = page.evaluate(MATH_TYPESET)
        assert math["count"] > 20 and not math["bad"], math
        display = page.locator("div.math mjx-container").first
        display.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        page.screenshot(path=str(SHOTS / f"notebooks__{NOTEBOOKS[0]}-math.png"))
        box = display.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 10, f"a display formula of size {box}"
    finally:
        page.close()


def test_the_api_page_lists_train_trainconfig_and_history(served, offline):
    page = offline.new_page()
    try:
        assert not _visit(page, f"{served}api.html")
        for name in ("helpers.train.train", "helpers.train.TrainConfig", "helpers.train.History"):
            entry = page.locator(f"dt[id='{name}']")
            assert entry.count() == 1 and name.split(".")[-1] in entry.inner_text(), f"{name} not on the API page"
        page.locator("dt[id='helpers.train.TrainConfig']").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "api-train.png"))
    finally:
        page.close()


def test_search_finds_the_clipping_notebook(served, offline):
    page = offline.new_page()
    try:
        problems = _visit(page, f"{served}search.html?q=clipping")
        results = page.locator("#search-results a[href*='04_gradient_clipping']")
        results.first.wait_for(timeout=TIMEOUT_MS)
        page.screenshot(path=str(SHOTS / "search-clipping.png"))
        assert not problems, problems
    finally:
        page.close()


def test_the_site_works_from_files_without_a_server(site, browser):
    """`make docs`, then open docs/_build/html/index.html: a notebook page from file:// shows images and math."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        problems = _visit(page, (site / "notebooks" / f"{NOTEBOOKS[0]}.html").as_uri())
        math = page.evaluate(MATH_TYPESET)
        assert math["count"] > 20 and not math["bad"], math
        assert not page.evaluate(IMAGES), "images not loaded from file://"
        assert not problems, problems
    finally:
        page.close()
