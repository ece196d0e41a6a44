"""The rendered book in a real browser (Debian's chromium, driven by Playwright), with no network.

`make test` builds the book before pytest runs; `.ci/run` installs chromium. Screenshots of each page's
first screen go to _build/screenshots/ (not committed) so a person can look at what readers see.
"""

import pathlib
import shutil

import pytest
import yaml

from conftest import ROOT

HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
PAGES = [TOC["root"]] + [c["file"] for c in TOC["chapters"]]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    assert pathlib.Path(CHROMIUM).exists(), "chromium is missing: apt-get install chromium (.ci/run does)"
    assert (HTML / "index.html").exists(), "the book is not built: run `make book` (make test does)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.external_requests = []

    def route(r):  # no network: anything that is not a local file is refused and recorded
        if r.request.url.startswith(("file:", "data:")):
            r.continue_()
        else:
            pg.external_requests.append(r.request.url)
            r.abort()
    pg.route("**/*", route)
    pg.console_errors = []
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    yield pg
    context.close()


def _open(page, name):
    page.goto((HTML / f"{name}.html").as_uri())
    page.wait_for_load_state("load")


@pytest.mark.parametrize("name", PAGES)
def test_page_loads_offline_with_no_errors_and_every_image(page, name):
    _open(page, name)
    assert page.external_requests == [], "the page fetched from the network"
    assert page.console_errors == []
    broken = page.eval_on_selector_all("img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80))")
    assert broken == []
    # myst-nb marks a cell's error output with .traceback and anything written to stderr with .stderr
    # (warnings included): a chapter that raises or warns shows neither.
    assert page.locator(".cell_output .traceback, .cell_output .stderr").count() == 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name.replace('/', '_')}.png"))


def _explorers(page):
    return page.locator(".cspnet-explorer")


@pytest.mark.parametrize("name", ["book/02_feature_map_growth", "book/03_cross_stage_split",
                                  "book/04_fusion_strategies"])
def test_static_explorer_responds_to_its_controls(page, name):
    _open(page, name)
    explorers = _explorers(page)
    assert explorers.count() == 1
    ex = explorers.first
    ex.scroll_into_view_if_needed()
    img = ex.locator("img.cspnet-frame")
    numbers = ex.locator(".cspnet-numbers-box")
    for control in ex.locator("[data-control]").all():
        before_src, before_numbers = img.get_attribute("src"), numbers.inner_text()
        if control.evaluate("el => el.tagName") == "SELECT":
            options = control.locator("option").all()
            current = control.input_value()
            target = next(o.get_attribute("value") for o in options if o.get_attribute("value") != current)
            control.select_option(target)
        else:
            control.focus()
            key = "ArrowLeft" if control.input_value() == control.get_attribute("max") else "ArrowRight"
            control.press(key)
            # the label next to the slider shows the new value
            assert control.locator("xpath=following-sibling::output").inner_text() != ""
        assert img.get_attribute("src") != before_src, "the figure did not change"
        assert numbers.inner_text() != before_numbers or "stage" in control.evaluate(
            "el => el.parentNode.textContent"), "the numbers did not change"
    SHOTS.mkdir(parents=True, exist_ok=True)
    ex.screenshot(path=str(SHOTS / f"{name.replace('/', '_')}_explorer.png"))
