"""The page at / in a real browser: Debian's Chromium driven by Playwright (issue 19)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from upright.data.samples import load_samples
from upright.geometry import PROTOCOL_CENTRE, rotate_image
from upright.shipped import shipped_model

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")
pytestmark = [
    pytest.mark.slow,  # a server process and a browser: 15 s; CI runs them (pytest -m slow)
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
    pytest.mark.skipif(shipped_model("mnist") is None, reason="no shipped model installed"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`upright serve` itself, in a child process on a free localhost port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    with open(log, "w") as out:
        child = subprocess.Popen([sys.executable, "-m", "upright", "serve", "--port", str(port)],
                                 stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                break
        except OSError:
            if child.poll() is not None:
                raise RuntimeError(f"upright serve exited: {log.read_text()}") from None
            time.sleep(0.2)
    yield url
    child.terminate()
    child.wait(10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"])
        yield chromium
        chromium.close()


@pytest.fixture
def turned(tmp_path):
    """A turned digit (for the mnist model) and a turned face (for the faces model)."""
    files = {}
    for dataset, model, angle in (("mnist", "mnist", 60.0), ("olivetti", "faces", -120.0)):
        samples = load_samples(dataset)
        usable = np.isin(samples.groups, [2, 3, 4, 5, 7, 9]) if dataset == "mnist" else samples.groups >= 0
        pick = int(np.flatnonzero(usable)[0])
        path = tmp_path / f"{dataset}-{pick}.png"
        Image.fromarray(rotate_image(samples.images[pick], angle, centre=PROTOCOL_CENTRE)).save(path)
        files[model] = (path, angle, samples.images[pick].shape[0])
    return files


@pytest.mark.parametrize("model", ["mnist", "faces"])
def test_a_turned_image_is_shown_upright_with_its_angle_confidence_and_chart(server, browser, turned,
                                                                           tmp_path, model):
    path, angle, side = turned[model]
    page = browser.new_page()
    page.goto(server)
    page.wait_for_selector("#model option", state="attached")
    page.select_option("#model", model)
    page.set_input_files("#file", [str(path)])
    page.wait_for_selector(".result .angle", timeout=30_000)
    card = page.locator(f"article[aria-label='{path.name}']")
    shown = float(card.locator(".angle").inner_text().rstrip("°"))
    assert abs((shown - angle + 180) % 360 - 180) < 15
    assert "confidence" in card.locator(".confidence").inner_text()
    card.locator("img.out").evaluate("img => img.decode()")
    assert card.locator("img.out").evaluate("img => img.naturalWidth") == side
    inked = card.locator("canvas").evaluate(
        "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some(v => v > 0)")
    assert inked  # the polar chart of the distribution is drawn
    assert card.locator("a[download]").get_attribute("download") == f"upright-{path.name}"
    page.screenshot(path=str(tmp_path / f"page-{model}.png"), full_page=True)
    assert (tmp_path / f"page-{model}.png").stat().st_size > 5000
    page.close()


def test_several_images_at_once(server, browser, turned):
    page = browser.new_page()
    page.goto(server)
    page.wait_for_selector("#model option", state="attached")
    page.set_input_files("#file", [str(turned["mnist"][0]), str(turned["faces"][0])])
    page.wait_for_function("document.querySelectorAll('.result .angle, .result .error').length == 2",
                           timeout=30_000)
    assert page.locator(".result").count() == 2
    page.close()


def test_the_page_is_keyboard_accessible_and_fits_a_phone(server, browser):
    page = browser.new_page(viewport={"width": 375, "height": 720})
    page.goto(server)
    page.wait_for_selector("#model option", state="attached")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "drop"
    # Enter on the drop zone opens the file chooser (the input's click, spied on here: the
    # browser's own chooser dialog is not what is under test).
    page.evaluate("document.getElementById('file').click = () => { window.chooserOpened = true; }")
    page.keyboard.press("Enter")
    assert page.evaluate("window.chooserOpened === true")
    assert page.evaluate("document.getElementById('file').multiple")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
    page.close()
