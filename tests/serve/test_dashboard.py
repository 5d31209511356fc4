"""The dashboard in a real headless Chromium (Debian's chromium + chromedriver, driven by Selenium): the page
loads from the server alone, its charts render, the try-it box returns a prediction, and the drift flag
appears after shifted traffic. Skips with the reason where no Chromium is installed, except under
SHIPML_TEST_BROWSER_REQUIRED=1 (CI), where that fails."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servers import Server, serving
from test_monitor import _pixels, _send, pets  # noqa: F401  (pets: the fixture, reused)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[object]:
    if not (CHROMIUM and DRIVER):
        reason = "no chromium + chromedriver (apt-get install chromium chromium-driver)"
        if os.environ.get("SHIPML_TEST_BROWSER_REQUIRED") == "1":
            pytest.fail(f"SHIPML_TEST_BROWSER_REQUIRED=1 but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _until(check: Callable[[], object], what: str, timeout: float = 30) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
            if got:
                return got
        except Exception:  # the element is not there yet, or was just redrawn
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the dashboard never showed {what}")
        time.sleep(0.2)


def test_the_dashboard_shows_models_charts_predictions_and_drift(browser, pets: dict[str, Path],  # noqa: F811
                                                                 packages: dict[str, Path], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    args = [f"pets={pets['pets']}", f"txt={packages['txt']}", "--min-rows", "60", "--window-rows", "120"]
    with serving(args, tmp_path) as server:
        _send(server, "pets", _pixels(120))  # traffic like the training data
        browser.get(f"http://127.0.0.1:{server.port}/")
        card = _until(lambda: browser.find_element(By.CSS_SELECTOR, 'section[data-model="pets"]'), "the pets card")
        bars = _until(lambda: card.find_elements(By.CSS_SELECTOR, "svg.psi-chart rect"), "the PSI chart")
        assert len(bars) >= 4  # brightness, contrast, channel means, confidence, ...
        assert "drift" not in card.find_element(By.CSS_SELECTOR, "h3").text
        _check_try_it(browser, By)
        _send(server, "pets", _pixels(120, 0, 90))  # darker: the window is now all shifted
        flag = _until(lambda: browser.find_element(By.CSS_SELECTOR, 'section[data-model="pets"] .drift-flag'),
                      "the drift flag", timeout=30)
        assert "brightness" in flag.text
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        _assert_no_external_assets(server)


def _check_try_it(browser, by) -> None:
    txt = browser.find_element(by.CSS_SELECTOR, 'section[data-model="txt"]')
    txt.find_element(by.CSS_SELECTOR, "textarea.try-input").send_keys("WIN MONEY NOW\nlunch at one?")
    txt.find_element(by.CSS_SELECTOR, "button.try-button").click()
    out = _until(lambda: txt.find_element(by.CSS_SELECTOR, "pre.try-output").text, "a prediction")
    assert '"label"' in out and out.count('"label"') == 2 and '"version": 1' in out


def _assert_no_external_assets(server: Server) -> None:
    page = server.call("GET", "/")[2]
    assert "<script>" in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page and "src=" not in page
