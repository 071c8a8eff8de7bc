"""The playground page (``GET /`` of ``rnnkit serve``) in a real headless browser: Debian's
``chromium`` and ``chromium-driver`` driven by Selenium, against a uvicorn server on a free port
holding a character language model and a dates model (runs as ``rnnkit train`` leaves them,
weights of step 0: the page needs answers, not good ones).

Without chromium, chromedriver or selenium these tests are skipped, except under ``CI=true``,
where they fail: CI must not skip them silently. With ``RNNKIT_SCREENSHOTS=1`` each test writes
a screenshot of its tab to docs/playground_*.png."""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="rnnkit serve needs fastapi")
pytest.importorskip("uvicorn", reason="rnnkit serve needs uvicorn")

from test_serve import untrained_run  # noqa: E402  (tests/serve is on the path)
from test_serve_media import media_runs, png, wav  # noqa: E402

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parents[2] / "docs"
CORPUS = "the quick brown fox jumps over the lazy dog.\n" * 60
WAIT = 30  # seconds for an answer, on a busy machine


def missing(what: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what}, and CI=true: the browser tests must run in CI", pytrace=False)
    pytest.skip(f"{what} (apt-get install chromium chromium-driver; pip install selenium)")


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """The server on 127.0.0.1 and a free port, in a thread, for the module's tests."""
    import uvicorn

    from rnnkit.serve import create_app

    root = tmp_path_factory.mktemp("playground")
    (root / "corpus.txt").write_text(CORPUS)
    media = media_runs(root)
    runs = [
        untrained_run(root, "charlm", path=str(root / "corpus.txt")),
        untrained_run(root, "dates"),
        media["ocr"],
        media["speech"],
        media["caption"],
    ]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(runs), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(WAIT)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing("selenium is not installed")
    binary = next(filter(None, map(shutil.which, ["chromium", "chromium-browser"])), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        missing(f"{'chromium' if binary is None else 'chromedriver'} is not on PATH")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]:
        options.add_argument(arg)
    options.add_argument("--window-size=960,720")
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, url):
    """The page freshly loaded, its tabs built."""
    browser.get(url)
    until(browser, lambda d: d.execute_script("return document.body.dataset.ready") == "true")
    return browser


def until(driver, condition):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(condition)


def open_tab(driver, tab: str):
    """Click the tab; its panel, now shown."""
    driver.find_element("css selector", f'#tabs button[data-tab="{tab}"]').click()
    panel = driver.find_element("css selector", f'section[data-panel="{tab}"]')
    assert panel.is_displayed()
    return panel


def screenshot(driver, name: str) -> None:
    if os.environ.get("RNNKIT_SCREENSHOTS") == "1":
        driver.save_screenshot(str(DOCS / f"playground_{name}.png"))


def last_request(driver) -> dict:
    return driver.execute_script("return window.rnnkitRequests[window.rnnkitRequests.length - 1]")


def test_the_page_loads_with_a_tab_per_model(page):
    tabs = [b.get_attribute("data-tab") for b in page.find_elements("css selector", "#tabs button")]
    assert tabs == ["charlm", "charlm/units", "dates", "ocr", "speech", "caption"]
    assert page.title == "rnnkit playground"
    shown = [p for p in page.find_elements("css selector", "section.panel") if p.is_displayed()]
    assert [p.get_attribute("data-panel") for p in shown] == ["charlm"]


def test_sampling_fills_the_box_with_the_servers_text(page, url):
    import httpx

    panel = open_tab(page, "charlm")
    panel.find_element("css selector", "textarea.prime").send_keys("the ")
    panel.find_element("css selector", "input.seed").send_keys("7")
    panel.find_element("css selector", "input.length").clear()
    panel.find_element("css selector", "input.length").send_keys("80")
    panel.find_element("css selector", "button.sample").click()
    status = panel.find_element("css selector", ".status")
    until(page, lambda d: "seed 7" in status.text)  # the stream has ended
    text = panel.find_element("css selector", "textarea.output").get_attribute("value")
    sent = last_request(page)
    assert sent["path"] == "models/charlm/sample/stream"
    assert sent["body"] == {"prime": "the ", "length": 80, "temperature": 1, "seed": 7}
    answer = httpx.post(url + "models/charlm/sample", json=sent["body"]).json()
    assert text == answer["text"] and text.startswith("the ") and len(text) > 4
    screenshot(page, "sample")


def test_a_refused_sample_shows_the_servers_reason_and_no_text(page):
    panel = open_tab(page, "charlm")
    panel.find_element("css selector", "textarea.prime").send_keys("the €")  # not in the corpus
    panel.find_element("css selector", "button.sample").click()
    status = panel.find_element("css selector", ".status")
    until(page, lambda d: "error" in status.get_attribute("class"))
    assert status.text.startswith("422: ") and "never seen in training" in status.text
    assert panel.find_element("css selector", "textarea.output").get_attribute("value") == ""


def test_a_slider_change_changes_the_request(page):
    from selenium.webdriver.common.keys import Keys

    panel = open_tab(page, "charlm")
    temperature = panel.find_element("css selector", "input.temperature")
    temperature.send_keys(Keys.ARROW_LEFT * 6)  # 1.00 -> 0.70 in steps of 0.05
    panel.find_element("css selector", "input.top-k").send_keys(Keys.ARROW_RIGHT * 5)  # off -> 5
    panel.find_element("css selector", "button.sample").click()
    status = panel.find_element("css selector", ".status")
    until(page, lambda d: "seed" in status.text)
    body = last_request(page)["body"]
    assert body["temperature"] == pytest.approx(0.7) and body["top_k"] == 5
    labels = [o.text for o in panel.find_elements("css selector", "output")]
    assert labels == ["0.70", "5"]


def test_the_attention_map_is_drawn_on_the_canvas_for_a_dates_model(page):
    panel = open_tab(page, "dates")
    panel.find_element("css selector", "input.input").send_keys("march 3 1999")
    panel.find_element("css selector", "button.predict").click()
    output = panel.find_element("css selector", "input.output")
    until(page, lambda d: output.get_attribute("value"))
    assert last_request(page) == {"path": "models/dates/predict", "body": {"input": "march 3 1999"}}
    # pixels neither white nor transparent: the weight cells and the token labels
    inked = page.execute_script(
        """const c = document.querySelector('section[data-panel="dates"] canvas.attention');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {
          if (d[i + 3] > 0 && d[i] + d[i + 1] + d[i + 2] < 750) n++;
        }
        return [c.width, c.height, n];"""
    )
    width, height, n = inked
    assert width > 100 and height > 100 and n > 0.2 * width * height, inked
    screenshot(page, "attention")


def test_the_hidden_unit_view_colours_the_characters(page):
    panel = open_tab(page, "charlm/units")
    text = "the quick brown fox.\nover the lazy dog jumps.\n"
    panel.find_element("css selector", "textarea.units-text").send_keys(text)
    panel.find_element("css selector", "button.show-units").click()
    until(page, lambda d: panel.find_elements("css selector", "div.coloured span"))
    assert last_request(page) == {"path": "models/charlm/activations", "body": {"text": text}}
    units = panel.find_elements("css selector", "ol.units li")
    assert len(units) > 3 and "chosen" in units[0].get_attribute("class")

    def colours():
        spans = panel.find_elements("css selector", "div.coloured span")
        assert len(spans) == len(text)
        return [s.value_of_css_property("background-color") for s in spans]

    first = colours()
    assert len(set(first)) > 3  # coloured by the unit's value, not one flat colour
    units[1].click()
    assert "chosen" in units[1].get_attribute("class") and colours() != first
    units[0].click()
    screenshot(page, "units")


def inked(driver, tab: str) -> list[int]:
    """The canvas of the tab: [width, height, pixels neither white nor transparent]."""
    return driver.execute_script(
        """const c = document.querySelector(`section[data-panel="${arguments[0]}"] canvas`);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {
          if (d[i + 3] > 0 && d[i] + d[i + 1] + d[i + 2] < 750) n++;
        }
        return [c.width, c.height, n];""",
        tab,
    )


@pytest.mark.parametrize(
    ("tab", "name", "field", "data"),
    [
        ("ocr", "line.png", "image", lambda: png(160, 32)),
        ("speech", "digits.wav", "audio", lambda: wav(0.5)),
        ("caption", "scene.png", "image", lambda: png(84, 84)),
    ],
    ids=["ocr", "speech", "caption"],
)
def test_a_file_is_read_and_its_columns_or_attention_drawn(page, tmp_path, tab, name, field, data):
    (tmp_path / name).write_bytes(data())
    panel = open_tab(page, tab)
    panel.find_element("css selector", "input.file").send_keys(str(tmp_path / name))
    panel.find_element("css selector", "button.predict").click()
    status = panel.find_element("css selector", ".status")
    until(page, lambda d: status.text not in ("", "…"))
    assert "error" not in status.get_attribute("class"), status.text
    sent = last_request(page)
    assert sent["path"] == f"models/{tab}/predict" and list(sent["body"]) == [field]
    width, height, n = inked(page, tab)
    assert width > 50 and height > 50 and n > 0.05 * width * height, (width, height, n)
    screenshot(page, tab)
