"""The question page as files: served at / with its assets, self-contained, text never inserted as HTML."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from qa.api.app import PAGE_DIR
from tests.api.conftest import make_client, make_pipeline

ASSETS = ["/page/page.css", "/page/page.js"]
URL = re.compile(r"""(?:https?:)?//[^\s"'`)<>]+""")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with make_client(make_pipeline(tmp_path_factory.mktemp("web"))) as c:
        yield c


def test_root_serves_the_page(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    assert '<input id="question"' in html and 'id="cards"' in html and 'id="reader"' in html
    for asset in ASSETS:
        assert f'"{asset}"' in html
    assert "default-src 'self'" in r.headers["content-security-policy"]


@pytest.mark.parametrize(("path", "kind"), [("/page/page.css", "text/css"), ("/page/page.js", "javascript")])
def test_assets_are_served(client: TestClient, path: str, kind: str) -> None:
    r = client.get(path)
    assert r.status_code == 200
    assert kind in r.headers["content-type"]
    assert r.text == (PAGE_DIR / Path(path).name).read_text(encoding="utf-8")


def test_page_loads_nothing_from_other_hosts(client: TestClient) -> None:
    for path in ["/", *ASSETS]:
        body = client.get(path).text
        assert URL.findall(body) == [], path
        assert "@import" not in body and "url(" not in body, path


def test_page_is_not_in_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/page") for p in paths)


def test_script_inserts_text_as_text() -> None:
    """Article and answer text go in through textContent and text nodes only."""
    js = (PAGE_DIR / "page.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink


def test_unknown_page_file_is_a_404(client: TestClient) -> None:
    assert client.get("/page/nope.js").status_code == 404
