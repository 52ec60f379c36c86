"""`yamcap review` in a real browser: headless Chromium driven by Selenium.

Opens the page by the tokened address (the tokenless one is refused), labels three candidates
with the keyboard (1, 2, 3 and the arrow keys), reloads the page (the token now rides in its
cookie), finds the labels kept, and checks the Raven tables on disk. Skipped where Chromium, chromedriver or
selenium is missing (CI installs them: apt-get install chromium chromium-driver).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the review extra is not installed (pip install -e '.[review]')")
pytest.importorskip("jinja2", reason="the review extra is not installed (pip install -e '.[review]')")
uvicorn = pytest.importorskip("uvicorn", reason="the review extra is not installed (pip install -e '.[review]')")
pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from yamnet_capuchin import annotations as ann  # noqa: E402
from yamnet_capuchin.review.app import create_app  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000"]


def find_browser() -> tuple[str, str] | None:
    """(chromium binary, chromedriver) if both are installed."""
    browser = next((b for b in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
                    if b and Path(b).exists()), None)
    driver = next((d for d in ("/usr/bin/chromedriver", shutil.which("chromedriver")) if d and Path(d).exists()), None)
    return (browser, driver) if browser and driver else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn serving an ASGI app on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self, app):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        t0 = time.time()
        while not self.server.started:
            if time.time() - t0 > 20 or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def chromium(browser: str, driver: str, profile: str):
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=opts)


@pytest.fixture
def browser():
    found = find_browser()
    if found is None:
        pytest.skip("no headless Chromium + chromedriver (apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="yamcap-chromium-")
    try:
        drv = chromium(*found, profile)
    except Exception as exc:  # noqa: BLE001 - a broken browser install is a skip, not a failure
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"Chromium did not start: {str(exc).splitlines()[0]}")
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()
    shutil.rmtree(profile, ignore_errors=True)


def js(drv, expr: str):
    return drv.execute_script(f"return {expr};")


def wait_for(drv, expr: str, timeout: float = 15.0):
    return WebDriverWait(drv, timeout, poll_frequency=0.05).until(lambda d: js(d, expr))


def press(drv, key: str) -> None:
    ActionChains(drv).send_keys(key).perform()


def test_label_with_keyboard_and_reload(browser, tmp_path, monkeypatch):
    from test_review import build_run

    monkeypatch.chdir(tmp_path)
    run = build_run(tmp_path)
    app = create_app(run, warm_up=False)
    with ServerThread(app) as url:
        browser.get(url + "/")  # without the launch token: refused
        assert "missing or wrong token" in browser.page_source
        browser.get(url + f"/?token={app.state.token}")  # the address yamcap review prints
        wait_for(browser, "document.querySelectorAll('#list tbody tr').length === 6")
        wait_for(browser, "document.getElementById('c-file').textContent !== '-'")
        # sorted by score: rec_b@1 (0.95), rec_a@2 (0.9), rec_c@3 (0.7), rec_a@8, rec_b@6, rec_a@12
        assert js(browser, "document.getElementById('c-file').textContent") == "audio/rec_b.wav"
        wait_for(browser, "document.getElementById('c-image').complete && "
                          "document.getElementById('c-image').naturalWidth > 0")  # the spectrogram loaded
        press(browser, "1")  # rec_b@1: call
        wait_for(browser, "document.getElementById('progress-text').textContent.startsWith('1 / 6')")
        press(browser, "2")  # rec_a@2: not a call (kind field: 'other')
        wait_for(browser, "document.getElementById('progress-text').textContent.startsWith('2 / 6')")
        assert js(browser, "document.getElementById('position').textContent") == "3 / 6"
        press(browser, Keys.ARROW_LEFT)
        assert js(browser, "document.getElementById('position').textContent") == "2 / 6"
        press(browser, Keys.ARROW_RIGHT)
        assert js(browser, "document.getElementById('position').textContent") == "3 / 6"
        press(browser, "3")  # rec_c@3: unsure
        wait_for(browser, "document.getElementById('progress-text').textContent.startsWith('3 / 6')")

        # the token went into a cookie and out of the address bar; a reload needs no token in the URL
        assert "token" not in browser.current_url
        browser.refresh()
        wait_for(browser, "document.querySelectorAll('#list tbody tr').length === 6")
        wait_for(browser, "document.getElementById('progress-text').textContent.startsWith('3 / 6')")
        labels = js(browser, "[...document.querySelectorAll('#list tbody tr')].map(r => r.cells[3].textContent)")
        assert labels == ["capuchin", "other", "unsure", "", "", ""]
        # resumed at the first unlabelled candidate: rec_a@8
        assert js(browser, "document.getElementById('position').textContent") == "4 / 6"
        assert js(browser, "document.getElementById('c-start').value") == "8.00"
        wait_for(browser, "document.getElementById('precision').innerHTML.includes('<svg')")

    logs = [e["message"] for e in browser.get_log("browser")]
    csp = [m for m in logs if "Content Security Policy" in m]
    assert csp == []  # the page runs entirely under its own CSP
    tables = {stem: [(s.begin_s, s.end_s, s.label) for s in ann.read_table(run / "annotations" / ann.table_name(stem))]
              for stem in ("rec_a", "rec_b", "rec_c")}
    assert tables == {"rec_a": [(2.0, 4.5, "other")], "rec_b": [(1.0, 3.0, "capuchin")], "rec_c": [(3.0, 5.0, "unsure")]}
