"""Settings of the HTTP edge only (environment prefix ``QA_``); the core's live in :mod:`qa.settings`."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# RFC 6750 b64token: what a client can send in "Authorization: Bearer <token>" unchanged.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class ApiSettings(BaseSettings):
    """Limits and switches of the HTTP service.

    Example: ``QA_API_TOKEN=s3cret QA_LOG_QUESTIONS=false qa serve --host 0.0.0.0``.
    """

    model_config = SettingsConfigDict(env_prefix="QA_", extra="ignore")

    api_token: SecretStr | None = Field(
        default=None, description="bearer token that write endpoints require (unset: writes only on a loopback bind)"
    )
    log_questions: bool = Field(default=False, description="log question texts at INFO (never tokens)")
    max_batch_questions: int = Field(default=32, ge=1, description="questions in one POST /ask/batch")
    max_bulk_documents: int = Field(
        default=100, ge=1, description="articles in one POST /documents/bulk (its body is bounded by max_body_bytes)"
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="request bodies larger than this are refused with 413"
    )
    max_concurrent_requests: int = Field(
        default=8, ge=1, description="questions in flight at once (writes run one at a time); more wait in a queue"
    )
    max_queued_requests: int = Field(
        default=32, ge=0, description="questions, and writes, that may wait for their turn; more are refused with 503"
    )
    queue_timeout_s: float = Field(
        default=1.0, ge=0.0, description="longest a question waits for a slot before a 503 (with Retry-After)"
    )
    write_queue_timeout_s: float = Field(
        default=30.0, ge=0.0, description="longest a write waits for its turn (writes run one at a time) before a 503 "
        "(with Retry-After); a refused write changed nothing"
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="origins a browser may call the API from "
        "(QA_CORS_ORIGINS='[\"https://a.example\"]'); none by default: the page is served from the API's own origin")
    root_path: str = Field(default="", description="the path prefix a reverse proxy serves the API under ('/qa'), "
                           "given to uvicorn: the OpenAPI document and /docs carry it")
    retry_after_s: int = Field(default=1, ge=1, description="Retry-After sent with 503 busy, not-ready and "
                               "store_unavailable answers")
    store_check_s: float = Field(
        default=1.0, gt=0.0, description="with a shared store (Milvus): how long /readyz reuses its last check that "
        "the store answers (and its article and chunk counts), and the longest that check may take")
    store_retry_max_s: float = Field(
        default=10.0, gt=0.0, description="a store that cannot be reached at start-up is tried again after "
        "store_check_s, then twice as long each time, up to this; the server becomes ready when it answers")

    @field_validator("api_token")
    @classmethod
    def _token_usable(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        token = v.get_secret_value()
        if not token.strip():
            raise ValueError("api_token must not be blank; unset QA_API_TOKEN or set it to a secret")
        if not _B64TOKEN.fullmatch(token):  # the value itself stays out of the message: it is a secret
            raise ValueError(
                f"api_token may contain only letters, digits and -._~+/ (a bearer token, RFC 6750); the one given "
                f"has {len(token)} characters including others (e.g. `python -c 'import secrets; "
                f"print(secrets.token_urlsafe(32))'` makes a good one)"
            )
        return v
