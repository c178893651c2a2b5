"""The question page end to end: a real server, headless Chromium, a reader's clicks and keys.

``QA_WEB_SCREENSHOTS=docs pytest tests/web -m e2e`` also writes the screenshots in docs/.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.web.conftest import NARROW, WAIT_S, WIDE, Server, set_viewport

pytestmark = pytest.mark.e2e

QUESTION = "When was the second Istanbul round?"
UNANSWERABLE = "What colour is the moon cheese?"
SCREENSHOTS = os.environ.get("QA_WEB_SCREENSHOTS")


def _open(driver, server: Server, path: str = "/") -> None:  # type: ignore[no-untyped-def]
    """Load the page afresh (from another page: a new #fragment alone would not reload it)."""
    driver.get("about:blank")
    driver.get(server.url + path)
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#corpus-list .doc"))


def _ask(driver, question: str) -> None:  # type: ignore[no-untyped-def]
    """Type the question, press Enter, wait for an answer or an error."""
    box = driver.find_element(By.ID, "question")
    box.clear()
    box.send_keys(question, Keys.ENTER)
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.find_element(By.ID, "answer").is_displayed()
        or "error" in (d.find_element(By.ID, "status").get_attribute("class") or ""))


def _text(element: WebElement) -> str:
    return str(element.get_property("textContent"))


def _wait_mark(driver) -> WebElement:  # type: ignore[no-untyped-def]
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.find_elements(By.ID, "reader-mark") or d.find_element(By.ID, "reader-status").text)
    status = driver.find_element(By.ID, "reader-status").text
    assert not status, status
    return driver.find_element(By.ID, "reader-mark")  # type: ignore[no-any-return]


def _in_view(driver, element: WebElement) -> bool:  # type: ignore[no-untyped-def]
    return bool(driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight;", element))


def _screenshot(driver, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    assert driver.save_screenshot(str(tmp_path / name))
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(Path(SCREENSHOTS) / name))


def test_answer_card_and_article_highlight_the_cited_span(browser, server: Server, tmp_path: Path) -> None:
    expected = httpx.post(f"{server.url}/ask", json={"question": QUESTION}, timeout=60).json()
    assert expected["answer"] is not None, expected
    cite = expected["citations"][0]
    article = httpx.get(f"{server.url}/documents/{cite['doc_id']}", timeout=10).json()

    _open(browser, server)
    _ask(browser, QUESTION)
    assert browser.find_element(By.ID, "answer-text").text == expected["answer"]
    assert f"Confidence {round(expected['score'] * 100)}%" in browser.find_element(By.ID, "confidence").text
    card = browser.find_element(By.CSS_SELECTOR, "#cards .citation")
    assert _text(card.find_element(By.CSS_SELECTOR, ".card-quote mark")) == cite["text"]
    assert _text(card.find_element(By.CSS_SELECTOR, ".card-quote")) == cite["context"]
    assert _text(card.find_element(By.CSS_SELECTOR, ".card-title")) == (article["title"] or cite["doc_id"])

    card.click()
    mark = _wait_mark(browser)
    text = article["text"]
    assert _text(mark) == text[cite["start"]:cite["end"]] == cite["text"]
    assert _text(browser.find_element(By.ID, "reader-text")) == text  # the whole article, nothing lost
    assert _in_view(browser, mark)
    _screenshot(browser, tmp_path, "screenshot.png")

    # Keyboard: Escape closes the article and gives focus back to the card; Enter reopens it.
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    WebDriverWait(browser, WAIT_S).until(lambda d: not d.find_element(By.ID, "reader").is_displayed())
    assert browser.switch_to.active_element == card
    card.send_keys(Keys.ENTER)
    assert _text(_wait_mark(browser)) == cite["text"]

    set_viewport(browser, *NARROW)
    try:
        _open(browser, server)
        _ask(browser, QUESTION)
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= NARROW[0], f"the page is {width}px wide on a {NARROW[0]}px screen"
        _screenshot(browser, tmp_path, "screenshot-narrow.png")
        browser.find_element(By.CSS_SELECTOR, "#cards .citation").click()
        mark = _wait_mark(browser)
        assert _text(mark) == cite["text"] and _in_view(browser, mark)
        assert browser.execute_script("return document.documentElement.scrollWidth") <= NARROW[0]
        _screenshot(browser, tmp_path, "screenshot-narrow-article.png")
    finally:
        set_viewport(browser, *WIDE)


def test_unanswerable_says_so_and_lists_the_closest_articles(browser, server: Server) -> None:
    expected = httpx.post(f"{server.url}/ask", json={"question": UNANSWERABLE}, timeout=60).json()
    assert expected["answer"] is None, expected
    titles = {d["doc_id"]: d["title"] or d["doc_id"]  # an untitled article is shown by its id
              for d in httpx.get(f"{server.url}/documents", timeout=10).json()["documents"]}

    _open(browser, server)
    _ask(browser, UNANSWERABLE)
    assert browser.find_element(By.ID, "answer-text").text == "Not in the articles"
    cards = browser.find_elements(By.CSS_SELECTOR, "#cards .passage")
    assert [_text(c.find_element(By.CSS_SELECTOR, ".card-title")) for c in cards] == [
        titles[d] for d in expected["retrieved"]]
    cards[0].click()
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "reader-text").get_property("textContent"))
    assert browser.find_element(By.ID, "reader-title").text == titles[expected["retrieved"][0]]


def test_api_errors_are_shown_in_plain_words(browser, server: Server) -> None:
    _open(browser, server)
    _ask(browser, "x" * 800)  # over the server's question limit: a 422
    status = browser.find_element(By.ID, "status")
    assert "error" in (status.get_attribute("class") or "")
    assert status.text.startswith("The question has 800 characters; the limit is"), status.text
    assert not browser.find_element(By.ID, "answer").is_displayed()


def test_article_offsets_count_code_points_and_text_stays_text(browser, server: Server) -> None:
    """Emoji before the span take two UTF-16 units each in the browser and one code point in the API;
    a title made of HTML is shown as text, not run."""
    title = 'Flags <img src=x onerror="window.pwned = 1"> 🇺🇦'
    text = f"{title}\nThe 🕊️ talks in 𝔖tone Town 🎉🎉 opened on 3 March 2031, the 👩‍💻 negotiators said."
    doc = httpx.post(f"{server.url}/documents", json={"doc_id": "emoji-offsets", "text": text}, timeout=120)
    assert doc.status_code in (200, 201), doc.text
    start = text.index("3 March 2031")
    end = start + len("3 March 2031")
    assert len(text.encode("utf-16-le")) // 2 > len(text)  # the text does hold astral characters

    _open(browser, server, f"/#doc=emoji-offsets&start={start}&end={end}")
    mark = _wait_mark(browser)
    assert _text(mark) == text[start:end]
    assert _text(browser.find_element(By.ID, "reader-text")) == text
    assert browser.find_elements(By.CSS_SELECTOR, "#reader img, #corpus img") == []
    assert browser.execute_script("return window.pwned") is None
    titles = [_text(t) for t in browser.find_elements(By.CSS_SELECTOR, "#corpus-list .doc-title")]
    assert title in titles, titles


def test_citation_cards_show_title_date_outlet_link_and_a_resolved_date(browser, server: Server,
                                                                        tmp_path: Path) -> None:
    """News added by another process (`qa add` of a saved page, a PDF and a JSONL archive) is
    picked up by the running server, and its cards carry the article's metadata."""
    import subprocess

    from tests.api.test_server import QA_BIN
    from tests.conftest import ROOT

    root = server.log.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update(QA_INDEX_DIR=str(root / "index"), QA_CORPUS_DIR=str(root / "corpus"), HF_HUB_OFFLINE="1")
    added = subprocess.run([str(QA_BIN), "add", str(ROOT / "examples" / "news")], env=env, cwd=root,
                           capture_output=True, text=True, timeout=300)
    assert added.returncode == 0, added.stderr
    ids = ["gdynia-crane", "poznan-tram", "ukraine-cities-kyiv-1", "ukraine-cities-lviv-2"]
    try:
        WebDriverWait(browser, WAIT_S).until(lambda d: all(
            httpx.get(f"{server.url}/documents/{i}", timeout=10).status_code == 200 for i in ids))
        question = "When did the Kyiv city council decide on the metro hours?"
        expected = httpx.post(f"{server.url}/ask", json={"question": question}, timeout=60).json()
        cite = expected["citations"][0]
        assert cite["doc_id"] == "ukraine-cities-kyiv-1" and cite["source"] == "Kyiv Post", expected
        assert cite["resolved_date"] == "2025-05-20", cite  # "on Tuesday" in an article of Tuesday 20 May 2025
        _open(browser, server)
        _ask(browser, question)
        card = browser.find_element(By.CSS_SELECTOR, "#cards .citation")
        assert _text(card.find_element(By.CSS_SELECTOR, ".card-title")) == "Kyiv metro extends hours"
        assert _text(card.find_element(By.CSS_SELECTOR, ".meta")) == "20 May 2025 · Kyiv Post"
        assert _text(card.find_element(By.CSS_SELECTOR, ".card-resolved")) == f"“{cite['text']}” = 20 May 2025"
        assert "(20 May 2025)" in browser.find_element(By.ID, "answer-text").text
        link = browser.find_element(By.CSS_SELECTOR, "#cards .card-url")
        assert link.get_attribute("href") == "https://kyiv.example/metro"
        _screenshot(browser, tmp_path, "screenshot-news.png")
    finally:
        for i in ids:
            httpx.delete(f"{server.url}/documents/{i}", timeout=30)
