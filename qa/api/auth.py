"""Who may write: a bearer token when ``QA_API_TOKEN`` is set, else only a server bound to loopback."""

from __future__ import annotations

import hmac
import ipaddress

from pydantic import SecretStr

from qa.api.errors import ApiError

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True if a server bound to ``host`` is reachable only from this machine."""
    h = host.strip().strip("[]").lower()
    if h in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_write_access(credentials: str | None, token: SecretStr | None, bind_host: str, workers: int,
                       shared_store: bool = False) -> None:
    """Raise :class:`ApiError` (401/403) unless a write may go ahead.

    Args:
        credentials: the bearer token the client sent, or None.
        token: the server's ``QA_API_TOKEN``.
        bind_host: the address the server listens on.
        workers: server processes. With a local index each holds its own copy, so writes need exactly one.
        shared_store: the store is shared by every process (Milvus): workers then write to it as
            replicas do, and any number of them may.
    """
    if workers > 1 and not shared_store:
        raise ApiError(403, "writes_disabled",
                       f"writes need a single server process (this one runs {workers} workers, each with its own "
                       "copy of the local index); restart with --workers 1, or serve a shared store (QA_STORE=milvus), "
                       "to add or delete articles")
    if token is None:
        if is_loopback(bind_host):
            return
        raise ApiError(403, "writes_disabled",
                       "writes are disabled on a public address without a token; set QA_API_TOKEN on the server "
                       "and send Authorization: Bearer <token>")
    if credentials is None:
        raise ApiError(401, "unauthorized", "this endpoint needs Authorization: Bearer <token> (the server's "
                       "QA_API_TOKEN)", headers={"WWW-Authenticate": 'Bearer realm="qa"'})
    # Header values arrive decoded as latin-1, so encoding back gives the bytes sent; the token is
    # ASCII (ApiSettings checks it). compare_digest: the time taken does not reveal how much matched.
    sent = credentials.encode("latin-1", errors="replace")
    if not hmac.compare_digest(sent, token.get_secret_value().encode("ascii")):
        raise ApiError(401, "unauthorized", "the bearer token is wrong",
                       headers={"WWW-Authenticate": 'Bearer realm="qa", error="invalid_token"'})
