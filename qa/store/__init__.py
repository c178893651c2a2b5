"""Stores: where the index lives, behind one protocol (:class:`qa.store.base.Store`).

``QA_STORE=local`` (the default): FAISS + BM25 + journal in ``QA_INDEX_DIR``, fast and needing
nothing running. ``QA_STORE=milvus``: a Milvus collection (Milvus Lite in a file, or a server),
so that any number of API replicas share one store.
"""

from __future__ import annotations

from qa.settings import Settings
from qa.store.base import Store, StoreView

__all__ = ["Store", "StoreView", "make_store"]


def make_store(settings: Settings) -> Store:
    """The store ``settings.store`` names (backends are imported only when chosen)."""
    if settings.store == "milvus":
        from qa.store.milvus import MilvusStore

        return MilvusStore(settings)
    from qa.store.local import LocalStore

    return LocalStore(settings)
