"""Security over real HTTP (a ``qa serve`` subprocess; raw sockets, so no client tidies the request).

Writes need the token; doc ids cannot leave the corpus folder however they are spelled; bodies,
questions, batches and articles have limits; error bodies carry no traceback or server path; the
log carries no question text or token unless question logging is switched on.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import assert_error
from tests.api.test_server import Server, _start, _stop
from tests.reliability.conftest import AUTH, TOKEN, fake_model_env

SECRET = "TOP-SECRET-OUTSIDE-THE-CORPUS"
QUESTION = "Which codename did Operation Nightjar use?"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    import shutil

    from tests.api.test_server import QA_BIN
    from tests.conftest import SEEDS

    if not QA_BIN.exists():
        pytest.skip(f"{QA_BIN} is not installed")
    root = tmp_path_factory.mktemp("secure")
    shutil.copytree(SEEDS, root / "corpus")
    (root / "secret.txt").write_text(SECRET)  # beside the corpus folder, where ../ would lead
    (root / "corpus.txt").write_text(SECRET)
    s = _start(root, fake_model_env(root, QA_API_TOKEN=TOKEN, QA_MAX_BODY_BYTES="65536"), "secure")
    yield s
    _stop(s)


def _raw(server: Server, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as is; (status, headers, body). Status 0: the server closed without answering."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        data = b""
        try:
            sock.sendall(request)
            while chunk := sock.recv(65536):
                data += chunk
        except (ConnectionResetError, BrokenPipeError):  # refused before the whole request was read
            pass
    if not data:
        return 0, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _get(server: Server, path: bytes, method: bytes = b"GET", body: bytes = b"",
         extra: bytes = b"") -> tuple[int, bytes]:
    """One request with a JSON body (if any), the path sent exactly as given."""
    if body:
        extra += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    req = method + b" " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + extra + b"\r\n" + body
    status, _, out = _raw(server, req)
    return status, out


def _no_leak(body: bytes) -> None:
    text = body.decode("utf-8", "replace")
    for leak in (SECRET, "Traceback", "/tmp/", "/work/", 'File "', "root:"):
        assert leak not in text, text


# ---------------------------------------------------------------- doc ids stay in the corpus folder
ESCAPES = [b"../secret", b"..%2fsecret", b"%2e%2e%2fsecret", b"%2E%2E%2Fsecret", b"..%2F..%2F..%2Fetc%2Fpasswd",
           b"../../../../etc/passwd", b"/etc/passwd", b"%2fetc%2fpasswd", b"..\\secret", b"..%5csecret",
           b"%5c..%5csecret", b"secret%00.txt", b"%00", b"..%00", b"%c0%ae%c0%ae%2fsecret",
           b"%e2%80%a4%e2%80%a4%2fsecret",  # one-dot leaders
           b"%ef%bc%8e%ef%bc%8e%ef%bc%8fsecret", b"....//secret", b"..;/secret", b"%252e%252e%252fsecret",
           b"../corpus", b".", b"..", b"%2e", b"~root", b"file:%2f%2f%2fetc%2fpasswd"]


@pytest.mark.parametrize("doc_id", ESCAPES)
def test_doc_ids_cannot_leave_the_corpus_folder(server: Server, doc_id: bytes) -> None:
    for method in (b"GET", b"DELETE"):
        status, body = _get(server, b"/documents/" + doc_id, method, extra=b"Authorization: Bearer " +
                            TOKEN.encode() + b"\r\n")
        assert status in (400, 404, 422), (method, doc_id, status, body)
        _no_leak(body)
    status, body = _get(server, b"/documents", b"POST", json.dumps({"doc_id": doc_id.decode("latin-1"),
                                                                    "text": SECRET}).encode(),
                        extra=b"Authorization: Bearer " + TOKEN.encode() + b"\r\n")
    assert status in (400, 422), (doc_id, status, body)


def test_no_write_landed_outside_the_corpus(server: Server) -> None:
    root = server.log.parent
    names = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and "index" not in p.parts}
    outside = {n for n in names if not n.startswith("corpus/")}
    assert outside == {"secret.txt", "corpus.txt", "secure.log"}, outside
    corpus = {n for n in names if n.startswith("corpus/")}
    assert len(corpus) == 5 and all(n.count("/") == 1 for n in corpus), corpus


# ---------------------------------------------------------------- the token
@pytest.mark.parametrize("auth", [b"", b"Authorization: Bearer\r\n", b"Authorization: Bearer wrong\r\n",
                                  b"Authorization: Basic " + TOKEN.encode() + b"\r\n",
                                  b"Authorization: Bearer " + TOKEN.encode() + b"x\r\n",
                                  b"Authorization: Bearer " + TOKEN[:-1].encode() + b"\r\n",
                                  b"Authorization: Bearer " + TOKEN.encode() + b"\xe9\r\n",
                                  b"X-Api-Token: " + TOKEN.encode() + b"\r\n"])
def test_writes_without_the_token_are_401(server: Server, auth: bytes) -> None:
    body = json.dumps({"doc_id": "intruder", "text": "Written without the token."}).encode()
    status, out = _get(server, b"/documents", b"POST", body, extra=auth)
    assert status == 401, out
    status, out = _get(server, b"/documents/003_56e07843aefd4aea", b"DELETE", extra=auth)
    assert status == 401, out
    assert httpx.get(f"{server.url}/documents/intruder").status_code == 404


# ---------------------------------------------------------------- limits
def test_size_limits(server: Server) -> None:
    big = json.dumps({"question": "x" * 70_000}).encode()
    status, out = _get(server, b"/ask", b"POST", big)
    assert status == 413 and b"body_too_large" in out
    chunks = b"".join(b"%x\r\n" % 8192 + b"x" * 8192 + b"\r\n" for _ in range(10)) + b"0\r\n\r\n"
    status, _, out = _raw(server, b"POST /ask HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: "
                                  b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
    assert status == 413, out  # no Content-Length: the stream is cut at the limit
    r = httpx.post(f"{server.url}/ask", json={"question": "why " * 200})
    assert_error(r, 422, "invalid_question")
    r = httpx.get(f"{server.url}/ask", params={"q": "why " * 200})
    assert_error(r, 422, "invalid_question")
    r = httpx.post(f"{server.url}/ask/batch", json={"questions": ["Who?"] * 33})
    assert_error(r, 422, "batch_too_large")
    r = httpx.post(f"{server.url}/documents", json={"doc_id": "big", "text": "word " * 14_000}, headers=AUTH)
    assert r.status_code == 413 and "body_too_large" in r.text  # 70 KB over the 64 KiB body limit
    # request lines and headers are bounded by the HTTP parser (h11): megabytes are refused, not buffered
    status, _ = _get(server, b"/ask?q=" + b"a" * 2_000_000)
    assert 400 <= status < 500 or status == 0, status
    status, _ = _get(server, b"/healthz", extra=b"X-Big: " + b"a" * 2_000_000 + b"\r\n")
    assert 400 <= status < 500 or status == 0, status
    assert httpx.get(f"{server.url}/healthz").status_code == 200  # and the server is still there


@pytest.mark.parametrize("garbage", [b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n",
                                     b"POST /ask HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                                     b"POST /ask HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                                     b"GET /documents/%ff%fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"])
def test_malformed_http_is_refused_without_detail(server: Server, garbage: bytes) -> None:
    status, _, body = _raw(server, garbage)
    assert status == 0 or 400 <= status < 500, (status, body)
    _no_leak(body)
    assert httpx.get(f"{server.url}/healthz").status_code == 200


# ---------------------------------------------------------------- the log
def test_questions_and_tokens_stay_out_of_the_log(server: Server) -> None:
    httpx.post(f"{server.url}/ask", json={"question": QUESTION})
    httpx.get(f"{server.url}/ask", params={"q": QUESTION})
    httpx.post(f"{server.url}/ask/batch", json={"questions": [QUESTION]})
    httpx.post(f"{server.url}/documents", json={"doc_id": "memo", "text": "A memo."}, headers=AUTH)
    httpx.post(f"{server.url}/documents", json={"doc_id": "memo", "text": "A memo."},
               headers={"Authorization": "Bearer not-the-token-at-all"})
    httpx.delete(f"{server.url}/documents/memo", headers=AUTH)
    log = server.output()
    assert "POST /ask 200" in log and "POST /documents 201" in log and "POST /documents 401" in log
    for secret in ("Nightjar", TOKEN, "not-the-token-at-all", SECRET):
        assert secret not in log, secret
    assert "Traceback" not in log


def test_error_bodies_never_name_server_files(server: Server) -> None:
    root = str(Path(server.log).parent)
    for r in (httpx.get(f"{server.url}/nope"), httpx.post(f"{server.url}/ask", content=b"{"),
              httpx.get(f"{server.url}/documents/no-such"), httpx.delete(f"{server.url}/documents/x"),
              httpx.post(f"{server.url}/ask", json={"question": "Who?", "top_k": 0})):
        assert r.status_code < 500
        assert_error(r, r.status_code)
        assert root not in r.text
