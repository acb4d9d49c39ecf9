"""The web page of `edgecls serve` in a real browser: Debian's headless chromium driven by selenium
(chromium-driver), against a real server (uvicorn, in a subprocess on 127.0.0.1) classifying a video
OpenCV wrote. Offline: the browser is started with everything that would reach the network turned off.

Screenshots (desktop and phone) are written to $EDGECLS_SCREENSHOTS when set (to look at them), else
to the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from livekit import MODEL, REFERENCE, digit_frame, write_video
from serving import ServeProcess, metric, write_token

from edgecls.runtime.capture import SourceError, import_cv2

try:
    import_cv2()
except SourceError:
    pytest.skip("OpenCV is not installed (pip install 'edgecls[camera]')", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="chromium and chromium-driver are not installed (Debian: apt install "
                                       "chromium chromium-driver)")
TOKEN = "page-test-token-0123456789abcdef"
SEVEN = sorted((REFERENCE / "test-images" / "7").iterdir())[0]
SCENES = "3" * 15 + "7" * 15  # 1.5 s of a 3, then 1.5 s of a 7, at 10 FPS
OFFLINE = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage")
WAIT_S = 20
DESKTOP, PHONE = (1280, 900), {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("page")
    pictures = {digit: digit_frame(digit, 240) for digit in "37"}
    video = write_video(folder / "scenes.avi", [pictures[d] for d in SCENES], len(SCENES), fps=10)
    model = folder / "model.tflite"
    shutil.copy(MODEL, model)
    served = ServeProcess(model, "--source", video, "--loop", "--token-file", write_token(folder, TOKEN),
                          "--threads", 1, log=folder / "serve.log", token=TOKEN)
    yield served
    assert served.stop() == 0, served.log


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in OFFLINE:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_window_size(*DESKTOP)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("EDGECLS_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def text_of(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def wait_text(driver, element_id: str, expected: str) -> None:
    WebDriverWait(driver, WAIT_S).until(lambda d: text_of(d, element_id) == expected,
                                        f"#{element_id} never showed {expected!r}")


def test_sign_in_then_the_model_card_and_an_upload(server, browser, shots):
    browser.get(f"{server.url}/")
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "login").is_displayed())
    assert not browser.find_element(By.ID, "app").is_displayed()  # nothing without the token
    # It asked /healthz whether a token is needed: no request was refused 401 before the user signed in.
    assert [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []
    browser.find_element(By.ID, "token").send_keys("not-the-token-0123456789")
    browser.find_element(By.ID, "signin").click()
    wait_text(browser, "login-error", "That token is not accepted.")
    browser.save_screenshot(str(shots / "page-sign-in.png"))
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "signin").click()
    model = server.client().get("/v1/model").json()
    wait_text(browser, "model-sha", model["sha256"])
    assert text_of(browser, "model-name") == "model.tflite" and text_of(browser, "model-classes") == "10"
    assert text_of(browser, "model-input") == "28×28 grayscale, int8"
    assert [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#labels li")] == model["labels"]
    browser.find_element(By.ID, "upload").send_keys(str(SEVEN))
    wait_text(browser, "result-label", "7")
    bars = browser.find_elements(By.CSS_SELECTOR, "#result-bars .bar")
    assert len(bars) == 5 and bars[0].text.startswith("7") and bars[0].text.endswith("%")
    # The token lives in the tab's session only: no cookie, never in the URL.
    assert browser.execute_script("return sessionStorage.getItem('edgecls-token')") == TOKEN
    assert browser.get_cookies() == [] and TOKEN not in browser.current_url


def test_the_live_label_follows_the_scene(server, browser, shots):
    if not browser.find_element(By.ID, "app").is_displayed():  # run alone: sign in first
        browser.get(f"{server.url}/")
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "signin").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "live").is_displayed())
    wait_text(browser, "live-label", "3")
    wait_text(browser, "live-label", "7")  # the video's scene changed
    wait_text(browser, "live-label", "3")
    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.execute_script("return document.getElementById('live-frame').naturalWidth") > 0)
    assert "running" in text_of(browser, "live-state")
    # The drift line: the last answers' class mix against training, read from GET /v1/live.
    WebDriverWait(browser, WAIT_S).until(lambda d: "class mix vs training" in text_of(d, "live-drift"))
    assert "unknown" in text_of(browser, "live-drift") and "mean confidence" in text_of(browser, "live-drift")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= DESKTOP[0]
    browser.save_screenshot(str(shots / "page-desktop.png"))
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    try:
        wait_text(browser, "live-label", "7")
        # Readable on a phone: one column, nothing wider than the screen.
        assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE["width"]
        live, upload = (browser.find_element(By.ID, name).rect for name in ("live", "classify"))
        assert upload["y"] >= live["y"] + live["height"] and live["width"] <= PHONE["width"]
        browser.save_screenshot(str(shots / "page-phone.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    # The page's own script and style ran under its Content-Security-Policy, and nothing was refused.
    refused = [entry["message"] for entry in browser.get_log("browser") if "Content Security Policy" in
               entry["message"]]
    assert refused == []


def test_without_a_live_source_the_page_asks_for_no_live_route(browser, tmp_path):
    model = tmp_path / "model.tflite"
    shutil.copy(MODEL, model)
    plain = ServeProcess(model, "--threads", 1, log=tmp_path / "serve.log")
    try:
        browser.get(f"{plain.url}/")
        wait_text(browser, "model-sha", plain.client().get("/v1/model").json()["sha256"])
        assert not browser.find_element(By.ID, "live").is_displayed()
        assert [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []
        assert metric(plain, "edgecls_http_requests_total", route="/v1/model", method="GET", status="200") >= 1
        assert metric(plain, "edgecls_http_requests_total", route="/v1/live", method="GET", status="404") is None
    finally:
        assert plain.stop() == 0, plain.log
