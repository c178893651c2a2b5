"""The pipeline behind the HTTP edge: loading, readiness, limits, and model work off the event loop.

Route handlers call these methods and translate results into schemas; the question answering
itself stays in :class:`qa.pipeline.QAPipeline`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar, cast

import anyio
import anyio.abc
import anyio.to_thread

from qa.api.auth import check_write_access
from qa.api.config import ApiSettings
from qa.api.errors import ApiError, error_parts
from qa.api.schemas import BulkDocument, DocumentPut, FiltersIn, PassageOut, SearchOut
from qa.documents import validate_doc_id
from qa.errors import IndexBusy, IndexMissing, QAError, StoreUnavailable
from qa.ingest.add import ingest_one
from qa.pipeline import QAPipeline, make_filters, validate_question
from qa.read import reader_model_available
from qa.settings import Settings
from qa.store import StoreView
from qa.types import Answer, Article, Filters

log = logging.getLogger("qa.api")
T = TypeVar("T")
Status = Literal["loading", "ready", "failed"]


class Service:
    """One loaded :class:`QAPipeline` shared by all requests of a server process.

    Questions run concurrently in worker threads; writes are serialised by the pipeline's own
    lock, and a question asked during a write sees the old or the new index, never a mix.

    On a shared store (Milvus) the service keeps no state of its own beyond caches keyed by
    content (question vectors, parsed passages): every question, read and write goes to the
    store, so any number of replicas answer alike. A store that cannot be reached makes
    requests ``503 store_unavailable`` and ``/readyz`` false; at start-up the load is retried
    with backoff until the store answers, and mid-run the store reconnects by itself.
    """

    def __init__(self, settings: Settings, api: ApiSettings, pipeline: QAPipeline, bind_host: str = "127.0.0.1",
                 workers: int = 1, on_loaded: Callable[[Service], None] | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.settings = settings
        self.api = api
        self.pipeline = pipeline
        self.bind_host = bind_host
        self.workers = workers
        self.on_loaded = on_loaded
        self.status: Status = "ready" if pipeline.retriever is not None else "loading"
        self.failure: str | None = None  # the load error, for the server log and terminal only
        self._questions = anyio.CapacityLimiter(api.max_concurrent_requests)
        self._writes = anyio.CapacityLimiter(1)
        self._waiting = {False: 0, True: 0}  # questions, writes; touched only on the event loop thread
        self.store_down: str | None = None  # why the store cannot be reached; None while it answers
        self.store_empty: str | None = None  # while a shared store holds no index yet: what to run
        # /readyz's last check of a shared store: (when, counts or the error); see readiness()
        self._readiness: tuple[float, Readiness | StoreUnavailable] | None = None
        self._readiness_lock = anyio.Lock()

    # ------------------------------------------------------------ loading
    def start(self, tg: anyio.abc.TaskGroup) -> None:
        """Begin loading in the background (the server answers /healthz meanwhile), and watch the
        index folder for other processes' changes."""
        if self.status == "ready":
            self._loaded()
        else:
            tg.start_soon(self._load)
        tg.start_soon(self._warm_dates)
        if self.settings.index_poll_s > 0:
            tg.start_soon(self._watch_index)

    async def _watch_index(self) -> None:
        """Reload the index when another process rebuilt it or wrote to it (every ``index_poll_s``)."""
        while True:
            await anyio.sleep(self.settings.index_poll_s)
            if self.status != "ready":
                continue
            try:
                await anyio.to_thread.run_sync(self.pipeline.refresh, abandon_on_cancel=True)
            except Exception as e:  # a half-written or garbled folder: keep serving what is loaded
                log.warning("could not reload the index changed on disk (%s: %s); serving the loaded one",
                            type(e).__name__, e)

    async def _warm_dates(self) -> None:
        """dateparser loads its language data on its first parse (seconds, more on a busy machine):
        do that in a worker thread now, not inside the first request that filters by a date."""
        from qa.ingest.dates import warm_date_parser

        await anyio.to_thread.run_sync(warm_date_parser, abandon_on_cancel=True)

    async def _load(self) -> None:
        """Load the pipeline; a store that cannot be reached is tried again (after ``store_check_s``,
        doubling up to ``store_retry_max_s``) until it answers, so replicas may start before it."""
        delay = self.api.store_check_s
        while True:
            try:
                # abandon_on_cancel: a shutdown during a long load does not wait for it
                await anyio.to_thread.run_sync(self._load_blocking, abandon_on_cancel=True)
            except (StoreUnavailable, IndexMissing) as e:  # IndexMissing: a shared store nobody filled yet
                self._note_waiting(e)
                await anyio.sleep(delay)
                delay = min(2 * delay, self.api.store_retry_max_s)
                continue
            except QAError as e:
                self.status, self.failure = "failed", str(e)
                log.error("cannot load the pipeline: %s", e)
            except Exception as e:
                self.status, self.failure = "failed", f"{type(e).__name__}: {e}"
                log.exception("cannot load the pipeline")
            else:
                self.status = "ready"
            break
        self.note_store(None)
        self.store_empty = None
        self._loaded()

    def _note_waiting(self, e: StoreUnavailable | IndexMissing) -> None:
        """Record why the load waits (the store unreachable, or empty: see _load_blocking); each
        reason is logged once, not once per try."""
        if isinstance(e, StoreUnavailable):
            if self.store_down is None:
                log.warning("cannot load: %s; trying again until the store answers (every %gs at most)", e,
                            self.api.store_retry_max_s)
            self.store_down = str(e)
            return
        if self.store_empty is None:
            log.warning("%s; waiting for it (checking every %gs at most)", e, self.api.store_retry_max_s)
        self.store_down, self.store_empty = None, str(e)

    def note_store(self, error: StoreUnavailable | None) -> None:
        """Record that the store failed (``error``) or answered (None); logs only a change, and a
        failure makes /readyz false at once. Call on the event loop thread."""
        if error is None:
            if self.store_down is not None:
                log.info("the store answers again")
            self.store_down = None
            return
        if self.store_down is None:
            log.warning("the store cannot be reached: %s; answering 503 store_unavailable until it is back", error)
        self.store_down = str(error)
        self._readiness = (anyio.current_time(), error)

    def _load_blocking(self) -> None:
        # QA_CORPUS_DIR, else the indexed folder. A store shared by replicas (Milvus) is never filled
        # by a server: replicas starting together would each fill it. It is filled once by
        # `qa index build DIR` (--if-empty in deployments), and the server waits for that.
        self.pipeline.load(notify=log.info, rebuild=self.pipeline.store.keeps_corpus_files)

    def _loaded(self) -> None:
        if self.status == "ready":
            log.info("ready: %s", self.describe())
        if self.on_loaded is not None:
            self.on_loaded(self)

    def describe(self) -> str:
        """One line: what is loaded."""
        idx = self.pipeline.index
        if self.status != "ready" or idx is None:
            return self.status
        try:
            counts = f"{len(idx.articles)} articles, {idx.n_chunks} chunks"
        except StoreUnavailable:
            counts = "the store does not answer right now"
        return f"{counts}, embedding model {idx.base_manifest.embed_model}, reader {self.pipeline.reader.name}"

    async def readiness(self) -> Readiness:
        """The loaded store's article and chunk counts, for /readyz. A shared store (Milvus) is
        checked (a one-row read within ``store_check_s``, then the counts) at most once every
        ``store_check_s``; other replicas' writes show in the counts after that at most, this
        replica's at once.

        Raises:
            StoreUnavailable: the store did not answer the last check.
        """
        idx = self.ready_pipeline().index
        if idx is None:
            raise RuntimeError("pipeline not loaded")
        if not self.pipeline.store.live:  # an in-memory snapshot: counting is free
            return Readiness(len(idx.articles), idx.n_chunks)
        async with self._readiness_lock:
            cached = self._readiness
            if cached is None or anyio.current_time() - cached[0] >= self.api.store_check_s:
                try:
                    result: Readiness | StoreUnavailable = await anyio.to_thread.run_sync(self._check_store, idx)
                except StoreUnavailable as e:
                    result = e
                self.note_store(result if isinstance(result, StoreUnavailable) else None)
                cached = self._readiness = (anyio.current_time(), result)
        if isinstance(cached[1], StoreUnavailable):
            raise cached[1]
        return cached[1]

    def _check_store(self, idx: StoreView) -> Readiness:
        self.pipeline.store.ping(self.api.store_check_s)
        return Readiness(len(idx.articles), idx.n_chunks)

    def ready_pipeline(self) -> QAPipeline:
        """The loaded pipeline; 503 while loading (store_unavailable while waiting for the store)
        or after a failed load."""
        if self.status == "loading" and self.store_down is not None:
            raise StoreUnavailable(self.store_down)
        if self.status != "ready":
            message = ("the service is still loading its models and index; retry shortly" if self.status == "loading"
                       else "the service failed to load its models or index; the server log says why")
            raise ApiError(503, "not_ready", message, headers={"Retry-After": str(self.api.retry_after_s)})
        return self.pipeline

    # ------------------------------------------------------------ running model work
    async def run(self, fn: Callable[..., T], *args: object, write: bool = False) -> T:
        """``fn(*args)`` in a worker thread, so the event loop keeps answering (e.g. /healthz).

        Questions: at most ``max_concurrent_requests`` in flight and ``max_queued_requests``
        waiting (first come, first served) for at most ``queue_timeout_s``. Writes run one at a
        time (the pipeline serialises them anyway), in their own queue of ``max_queued_requests``,
        so that writes waiting for their turn never hold the questions' slots, for at most
        ``write_queue_timeout_s``; a write then waits at most ``write_timeout_s`` for a compaction or
        another process. Beyond a full queue or a wait, a 503 with Retry-After asks the client to
        come back (a refused write changed nothing).
        """
        slot = await self._take_slot(write)
        try:
            result = await anyio.to_thread.run_sync(functools.partial(fn, *args))
        except IndexBusy as e:
            raise ApiError(503, "busy", f"the server is busy: {e}",
                           headers={"Retry-After": str(self.api.retry_after_s)}) from e
        except StoreUnavailable as e:
            raise self._store_unavailable(e) from e
        finally:
            self._gate(write)[0].release_on_behalf_of(slot)
        if write:
            self._readiness = None  # /readyz counts this replica's write at once
        return result

    async def read(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)``, a quick read of the loaded index (an article, a page of the list), in a
        worker thread but outside the questions' queue: reads never wait behind model work."""
        try:
            return await anyio.to_thread.run_sync(functools.partial(fn, *args))
        except StoreUnavailable as e:
            raise self._store_unavailable(e) from e

    def _store_unavailable(self, e: StoreUnavailable) -> ApiError:
        """503 store_unavailable for a request the store failed (its address stays in the log)."""
        self.note_store(e)
        status, code, message, _ = error_parts(e, "")
        return ApiError(status, code, message, headers={"Retry-After": str(self.api.retry_after_s)})

    def _gate(self, write: bool) -> tuple[anyio.CapacityLimiter, float]:
        return ((self._writes, self.api.write_queue_timeout_s) if write
                else (self._questions, self.api.queue_timeout_s))

    async def _take_slot(self, write: bool) -> object:
        """Wait for a question (or write) slot; the returned token releases it, from any task
        (a streamed answer releases it in the task that sends the response)."""
        gate, timeout = self._gate(write)
        if gate.available_tokens == 0 and self._waiting[write] >= self.api.max_queued_requests:
            raise self._busy(f"{self._waiting[write]} are waiting")
        slot = object()
        acquired = False
        self._waiting[write] += 1
        try:
            with anyio.move_on_after(timeout):
                await gate.acquire_on_behalf_of(slot)
                acquired = True
        finally:
            self._waiting[write] -= 1
        if not acquired:
            raise self._busy(f"none finished within {timeout:g}s")
        return slot

    def _busy(self, why: str) -> ApiError:
        return ApiError(503, "busy", f"the server is busy (all request slots in use, {why}); retry shortly",
                        headers={"Retry-After": str(self.api.retry_after_s)})

    # ------------------------------------------------------------ questions
    def _check_reader(self, reader: str | None) -> None:
        """422 for a reader this server cannot run (the core's message would name its model folder).
        Looks at the model folder: call it in a worker thread."""
        if reader == "transformers" and not reader_model_available(self.settings.reader_model):
            raise ApiError(422, "reader_unavailable", "reader 'transformers' is not available on this server "
                           "(no QA model installed); use reader 'span' or leave reader out")

    def _log_questions(self, questions: list[str]) -> None:
        if self.api.log_questions:
            limit = self.settings.max_question_chars
            for q in questions:  # an over-long question (refused next) is cut, not logged whole
                log.info("question: %r%s", q[:limit], " (cut)" if len(q) > limit else "")

    def _check_batch_size(self, n: int) -> None:
        limit = self.api.max_batch_questions
        if n > limit:
            raise ApiError(422, "batch_too_large",
                           f"the batch has {n} questions; the limit is {limit} (QA_MAX_BATCH_QUESTIONS)")

    async def ask(self, question: str, top_k: int | None, reader: str | None,
                  filters: FiltersIn | None = None, n_best: int = 1) -> Answer:
        pipeline = self.ready_pipeline()
        self._log_questions([question])

        def work() -> Answer:
            self._check_reader(reader)
            return pipeline.ask(question, top_k, reader, to_filters(filters), n_best)

        return await self.run(work)

    async def ask_batch(self, questions: list[str], top_k: int | None, reader: str | None,
                        filters: FiltersIn | None = None) -> list[Answer]:
        pipeline = self.ready_pipeline()
        self._check_batch_size(len(questions))
        self._log_questions(questions)

        def work() -> list[Answer]:
            self._check_reader(reader)
            return pipeline.ask_batch(questions, top_k, reader, to_filters(filters))

        return await self.run(work)

    async def ask_stream(self, questions: list[str], top_k: int | None, reader: str | None,
                         filters: FiltersIn | None = None) -> AsyncGenerator[Answer, None]:
        """The answers to ``questions`` in order, each as soon as it is answered (one pass per
        question). Everything that can refuse the batch (its size, a question, the reader, the
        filters, a busy server) is checked before this returns, so that it is an HTTP error; the
        batch holds one question slot until the last answer, or until the iterator is closed.
        """
        pipeline = self.ready_pipeline()
        self._check_batch_size(len(questions))
        self._log_questions(questions)
        stream = self._answers(pipeline, questions, top_k, reader, filters)
        await anext(stream)  # up to its first yield: the slot taken and the batch checked
        # After that first yield (None), the stream yields only answers.
        return cast(AsyncGenerator[Answer, None], stream)

    async def _answers(self, pipeline: QAPipeline, questions: list[str], top_k: int | None, reader: str | None,
                       filters: FiltersIn | None) -> AsyncGenerator[Answer | None, None]:
        slot = await self._take_slot(write=False)
        try:
            def check() -> tuple[list[str], Filters | None]:
                self._check_reader(reader)
                limit = self.settings.max_question_chars
                return [validate_question(q, limit) for q in questions], to_filters(filters)

            qs, parsed = await anyio.to_thread.run_sync(check)
            yield None
            for q in qs:
                yield await anyio.to_thread.run_sync(functools.partial(pipeline.ask, q, top_k, reader, parsed))
        finally:
            self._questions.release_on_behalf_of(slot)

    async def search(self, question: str, k: int, filters: FiltersIn | None) -> SearchOut:
        pipeline = self.ready_pipeline()
        self._log_questions([question])

        def run() -> SearchOut:
            hits = pipeline.search(question, k, to_filters(filters))
            index = pipeline.retriever.index if pipeline.retriever is not None else None
            passages = []
            for h in hits:
                art = index.articles.get(h.chunk.doc_id) if index is not None else None
                passages.append(PassageOut(
                    doc_id=h.chunk.doc_id, start=h.chunk.start, end=h.chunk.end, text=h.chunk.text, score=h.score,
                    cosine=h.dense, title=(art.title or None) if art else None, date=art.date if art else None,
                    source=art.source if art else None, url=art.url if art else None))
            return SearchOut(question=question.strip(), passages=passages)

        return await self.run(run)

    # ------------------------------------------------------------ documents
    async def document_page(self, limit: int, after: str | None) -> tuple[list[Article], str | None, int]:
        """One page of the article list, off the event loop (a large corpus stalls nothing)."""
        return await self.read(self.ready_pipeline().document_page, limit, after)

    async def document(self, doc_id: str) -> Article:
        """One article, looked up in a worker thread; 422 for an unsafe doc_id, 404 for an unknown one.

        An indexed article is found by its id as listed, even one the write rules would refuse
        (``sub/a`` from a nested corpus folder): reading is a lookup, never a file path.
        """
        pipeline = self.ready_pipeline()

        def lookup() -> Article:
            index = pipeline.index
            if index is not None and doc_id in index.articles:
                return index.articles[doc_id]
            validate_doc_id(doc_id, self.settings.max_doc_id_chars)
            return pipeline.document(doc_id)

        return await self.read(lookup)

    def _counts(self) -> tuple[int, int]:
        """(articles, chunks) in the current index."""
        idx = self.ready_pipeline().index
        return (len(idx.articles), idx.n_chunks) if idx is not None else (0, 0)

    def authorize_write(self, credentials: str | None) -> None:
        check_write_access(credentials, self.api.api_token, self.bind_host, self.workers,
                           shared_store=not self.pipeline.store.keeps_corpus_files)

    def _check_write(self, body: DocumentPut) -> None:
        """The edge's own refusals of one write, before it waits for its turn: 422 for text with
        html or for nothing to store, 413 for a text (or page) over QA_MAX_DOCUMENT_CHARS."""
        if body.text is not None and body.html is not None:
            raise ApiError(422, "invalid_request", "give text or html, not both")
        if body.text is None and body.html is None and not body.url:
            raise ApiError(422, "invalid_request", "give the article's text, its page's html, or a url to fetch")
        limit = self.settings.max_document_chars
        size = len(body.text or body.html or "")  # a title is metadata: it does not count
        if size > (limit if body.text is not None else 10 * limit):  # a page holds markup besides its text
            raise ApiError(413, "document_too_large", f"the {'text' if body.text is not None else 'html'} has "
                           f"{size} characters; the limit is {limit} (QA_MAX_DOCUMENT_CHARS)")

    def _write_blocking(self, pipeline: QAPipeline, doc_id: str, body: DocumentPut,
                        if_match: str | None) -> tuple[Article, bool]:
        """One write through the pipeline (in a worker thread): plain text, with a title or not
        (kept as metadata, never in the text); text with other metadata, a page or a URL
        converted first."""
        meta = {"title": body.title, "date": body.date, "source": body.source, "url": body.url,
                "author": body.author}
        if body.text is not None and body.html is None and all(v is None for k, v in meta.items() if k != "title"):
            return pipeline.add_document(doc_id, body.text, body.title, if_match)
        doc = ingest_one(body.text, body.html, meta, self.settings.max_document_chars)
        article, replaced, _ = pipeline.add_converted(doc_id, doc, if_match)
        return article, replaced

    async def write(self, doc_id: str, body: DocumentPut, if_match: str | None = None) -> Written:
        """Add or replace one article (POST, PUT): on disk (fsynced) and in the index when this returns."""
        pipeline = self.ready_pipeline()
        self._check_write(body)

        def work() -> Written:
            article, replaced = self._write_blocking(pipeline, doc_id, body, if_match)
            return Written(article, replaced, *self._counts())

        return await self.run(work, write=True)

    async def write_bulk(self, items: list[BulkDocument]) -> BulkWritten:
        """Write ``items`` in order, each through the same path as one POST /documents, in one turn
        of the write queue. Every item is answered: written (durable before the next one starts)
        or its error; one item's failure does not stop the others."""
        pipeline = self.ready_pipeline()
        limit = self.api.max_bulk_documents
        if len(items) > limit:
            raise ApiError(422, "bulk_too_large",
                           f"the bulk write has {len(items)} documents; the limit is {limit} (QA_MAX_BULK_DOCUMENTS)")

        def work() -> BulkWritten:
            results: list[BulkItem] = []
            for i, item in enumerate(items):
                try:
                    self._check_write(item)
                    article, replaced = self._write_blocking(pipeline, item.doc_id, item, item.if_match)
                except Exception as e:  # each item is answered on its own; BaseException (a kill) is not caught
                    status, code, message, _ = error_parts(e, f"POST /documents/bulk item {i} ({item.doc_id!r})")
                    results.append(BulkItem(error=(status, code, message)))
                else:
                    results.append(BulkItem(article=article, replaced=replaced))
            return BulkWritten(results, *self._counts())

        return await self.run(work, write=True)

    async def delete_document(self, doc_id: str) -> tuple[int, int]:
        """Delete an article; (articles, chunks) left in the index."""
        pipeline = self.ready_pipeline()

        def work() -> tuple[int, int]:
            pipeline.delete_document(doc_id)
            return self._counts()

        return await self.run(work, write=True)


@dataclass(frozen=True)
class Readiness:
    """What /readyz reports of the loaded store."""

    documents: int
    chunks: int


@dataclass(frozen=True)
class Written:
    """One applied write: the article as stored, whether it replaced one, and the index's size after it."""

    article: Article
    replaced: bool
    documents: int
    chunks: int


@dataclass(frozen=True)
class BulkItem:
    """One item of a bulk write: the article as stored and whether it replaced one, or the error
    (status, code, message) that the same POST /documents would have been answered with."""

    article: Article | None = None
    replaced: bool = False
    error: tuple[int, str, str] | None = None


@dataclass(frozen=True)
class BulkWritten:
    """A bulk write's outcome per item, in order, and the index's size after the last item."""

    results: list[BulkItem]
    documents: int
    chunks: int


def to_filters(f: FiltersIn | None) -> Filters | None:
    """The core's filters (422 for a date that is not one; dateparser is slow: call it in a worker thread)."""
    return None if f is None else make_filters(f.since, f.until, f.source, f.doc_ids)
