"""Web page fixtures: a real ``qa serve`` process over a copy of the seeds, and Debian's Chromium
driven headless through Selenium (skipped, with the reason, where the browser is not installed)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.test_server import Server, _free_port
from tests.conftest import SEEDS

QA_BIN = Path(sys.executable).with_name("qa")
READY_TIMEOUT_S = 300.0  # model loading shares two cores with whatever else runs
WAIT_S = 60.0  # for an answer or an article to show in the page
WIDE = (1280, 900)
NARROW = (390, 844)
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-quic", "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars",
    "--force-device-scale-factor=1", "--lang=en-GB",
]


def _browser_paths() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or shutil.which("chromedriver", path="/usr/bin")  # Debian's, off PATH
    return (chromium, driver) if chromium and driver else None



@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``qa serve`` on a free port over a fresh copy of the seeds, span reader (fast, deterministic)."""
    if _browser_paths() is None:
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    root = tmp_path_factory.mktemp("web")
    shutil.copytree(SEEDS, root / "corpus")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update(QA_INDEX_DIR=str(root / "index"), QA_CORPUS_DIR=str(root / "corpus"), QA_READER="span",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    port = _free_port()
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(QA_BIN), "serve", "--port", str(port)], cwd=root, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    srv = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"qa serve exited with {proc.returncode}:\n{srv.output()}")
            try:
                if httpx.get(f"{srv.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"qa serve not ready after {READY_TIMEOUT_S}s:\n{srv.output()}")
            time.sleep(0.25)
        yield srv
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Headless Chromium with a throwaway profile, its viewport set to ``WIDE``."""
    paths = _browser_paths()
    if paths is None:
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    chromium, chromedriver = paths
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=DriverService(executable_path=chromedriver))
    try:
        set_viewport(driver, *WIDE)
        yield driver
    finally:
        driver.quit()


def set_viewport(driver, width: int, height: int) -> None:  # type: ignore[no-untyped-def]
    """An exact CSS viewport (a window size would include the browser's own frame)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600,
    })
