"""Screenshots of the playground (``rnnkit serve``'s page at ``/``) on trained runs, for the docs:
the hidden-unit view of a character model and the columns of an OCR run.

    python benchmarks/playground_screenshots.py --charlm runs/charlm-quick --ocr runs/ocr-default

Starts ``rnnkit serve`` on the runs in a subprocess on a free port, drives Debian's headless
chromium (``chromium``, ``chromium-driver``) through Selenium, and writes
docs/playground_trained_units.png and docs/playground_trained_ocr.png. Not a timing: it only
makes the pictures (the browser tests make theirs on untrained runs)."""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

DOCS = Path(__file__).resolve().parents[1] / "docs"
TEXT = """ROMEO.
I will not come; and so (they say) he went.

JULIET.
[Aside.] "Is he married?" I cannot hate thee.
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--charlm", required=True, help="a charlm run")
    p.add_argument("--ocr", required=True, help="an ocr run")
    p.add_argument("--text", default=TEXT, help="the text of the hidden-unit view")
    a = p.parse_args()

    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    from rnnkit.tasks import ocr_data as D

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", "serve", a.charlm, a.ocr, "--port", str(port)]
    )
    url = f"http://127.0.0.1:{port}/"
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]:
        options.add_argument(arg)
    options.add_argument("--window-size=960,900")
    driver = None
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
        driver.get(url)
        wait = WebDriverWait(driver, 120)
        wait.until(lambda d: d.execute_script("return document.body.dataset.ready") == "true")

        def tab(name: str):
            driver.find_element("css selector", f'#tabs button[data-tab="{name}"]').click()
            return driver.find_element("css selector", f'section[data-panel="{name}"]')

        charlm, ocr = Path(a.charlm).name, Path(a.ocr).name
        panel = tab(f"{charlm}/units")
        panel.find_element("css selector", "textarea.units-text").send_keys(a.text)
        panel.find_element("css selector", "button.show-units").click()
        wait.until(lambda d: panel.find_elements("css selector", "div.coloured span"))
        driver.save_screenshot(str(DOCS / "playground_trained_units.png"))

        with tempfile.TemporaryDirectory() as folder:
            img = D.render_text("the lazy dog", "DejaVu Sans", np.random.default_rng(1))
            line = Path(folder) / "line.png"
            Image.fromarray((255 - img * 255).astype(np.uint8)).save(line)
            panel = tab(ocr)
            panel.find_element("css selector", "input.file").send_keys(str(line))
            panel.find_element("css selector", "button.predict").click()
            output = panel.find_element("css selector", "input.output")
            wait.until(lambda d: output.get_attribute("value"))
        driver.save_screenshot(str(DOCS / "playground_trained_ocr.png"))
        print(
            f"wrote {DOCS / 'playground_trained_units.png'}, {DOCS / 'playground_trained_ocr.png'}"
        )
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
