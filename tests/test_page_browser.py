"""The page at / in a real browser: Debian's Chromium driven by Playwright (issue 19)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
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
pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
    pytest.mark.skipif(shipped_model("mnist") is None, reason="no shipped model installed"),
]


@pytest.fixture(scope="module")
def server():
    import uvicorn

    from upright.serve.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app("mnist"), host="127.0.0.1", port=port, log_level="warning")
    live = uvicorn.Server(config)
    thread = threading.Thread(target=live.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not live.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    live.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def digits(tmp_path):
    samples = load_samples("mnist")
    picks = np.flatnonzero(np.isin(samples.groups, [2, 3, 4, 5, 7, 9]))[:2]
    paths = []
    for pick, angle in zip(picks, (60.0, -120.0), strict=True):
        path = tmp_path / f"digit{pick}.png"
        Image.fromarray(rotate_image(samples.images[pick], angle, centre=PROTOCOL_CENTRE)).save(path)
        paths.append((path, angle))
    return paths


def test_two_chosen_images_are_shown_upright_with_angle_confidence_and_chart(server, browser, digits):
    page = browser.new_page()
    page.goto(server)
    page.wait_for_selector("#model option", state="attached")
    assert page.locator("#model").input_value() == "mnist"
    page.set_input_files("#file", [str(p) for p, _ in digits])
    page.wait_for_function("document.querySelectorAll('.result .angle').length == 2", timeout=30_000)
    for path, angle in digits:
        card = page.locator(f"article[aria-label='{path.name}']")
        shown = float(card.locator(".angle").inner_text().rstrip("°"))
        assert abs((shown - angle + 180) % 360 - 180) < 15
        assert "confidence" in card.locator(".confidence").inner_text()
        card.locator("img.out").evaluate("img => img.decode()")
        assert card.locator("img.out").evaluate("img => img.naturalWidth") == 28
        inked = card.locator("canvas").evaluate(
            "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some(v => v > 0)")
        assert inked  # the polar chart of the distribution is drawn
        assert card.locator("a[download]").get_attribute("download") == f"upright-{path.name}"
    page.close()


def test_the_page_is_keyboard_accessible_and_fits_a_phone(server, browser):
    page = browser.new_page(viewport={"width": 375, "height": 720})
    page.goto(server)
    page.wait_for_selector("#model option", state="attached")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "drop"
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    assert chooser.value.is_multiple()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
    page.close()
