"""The OpenAPI description documents every endpoint with examples and the error shape."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from qa.api.schemas import TOP_K_MAX, TOP_K_MIN
from qa.settings import Settings

ENDPOINTS = {("post", "/ask"), ("get", "/ask"), ("post", "/ask/batch"), ("get", "/documents"),
             ("get", "/documents/{doc_id}"), ("post", "/documents"), ("delete", "/documents/{doc_id}"),
             ("get", "/healthz"), ("get", "/readyz"), ("post", "/search"), ("get", "/search"),
             ("put", "/documents/{doc_id}"), ("post", "/documents/bulk")}


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]  # type: ignore[no-any-return]
    return schema


def test_docs_page_is_served_without_internet(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()
    assert "cdn" not in r.text and "https://" not in r.text.replace("https://fastapi.tiangolo.com", "")
    for asset in ("/static/swagger-ui-bundle.js", "/static/swagger-ui.css", "/static/favicon-32x32.png"):
        assert asset in r.text
        assert client.get(asset).status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_every_endpoint_is_documented_with_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    found = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert found == ENDPOINTS
    for method, path in ENDPOINTS:
        op = spec["paths"][path][method]
        ok = next(s for s in ("200", "201") if s in op["responses"])
        out = _resolve(spec, op["responses"][ok]["content"]["application/json"]["schema"])
        assert out.get("examples"), f"{method} {path}: no response example"
        if "requestBody" in op:
            body = _resolve(spec, op["requestBody"]["content"]["application/json"]["schema"])
            assert body.get("examples"), f"{method} {path}: no request example"
        for param in op.get("parameters", []):
            if param["in"] == "query":
                assert param.get("examples") or param["schema"].get("examples"), f"{method} {path}: {param['name']}"


def test_errors_are_documented_with_the_error_shape(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/ask"]["post"]
    assert op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_request_and_response_schemas_are_separate(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ask = spec["paths"]["/ask"]["post"]
    req = ask["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    res = ask["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert req.endswith("/AskRequest") and res.endswith("/AnswerOut")


def test_top_k_bounds_follow_the_settings() -> None:
    field = Settings.model_fields["top_k"]
    bounds = {type(m).__name__: m for m in field.metadata}
    assert (TOP_K_MIN, TOP_K_MAX) == (bounds["Ge"].ge, bounds["Le"].le) == (1, 50)


def test_write_endpoints_declare_bearer_auth(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert spec["paths"]["/documents"]["post"].get("security")
    assert not spec["paths"]["/documents"]["get"].get("security")


def test_the_stream_and_the_bulk_write_are_documented(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    batch = spec["paths"]["/ask/batch"]["post"]
    ndjson = batch["responses"]["200"]["content"]["application/x-ndjson"]
    assert ndjson["schema"]["$ref"].endswith("/AnswerOut") and ndjson["example"].endswith("\n")
    accept = next(p for p in batch["parameters"] if p["in"] == "header" and p["name"] == "accept")
    assert "application/x-ndjson" in accept["description"] and "application/x-ndjson" in batch["description"]
    bulk = spec["paths"]["/documents/bulk"]["post"]
    assert bulk.get("security")
    request = _resolve(spec, bulk["requestBody"]["content"]["application/json"]["schema"])
    assert "QA_MAX_BULK_DOCUMENTS" in request["properties"]["documents"]["description"]
    item = _resolve(spec, request["properties"]["documents"]["items"])
    assert {"doc_id", "text", "html", "title", "if_match"} <= set(item["properties"])
    out = _resolve(spec, bulk["responses"]["200"]["content"]["application/json"]["schema"])
    assert {"results", "written", "failed"} <= set(out["properties"])
