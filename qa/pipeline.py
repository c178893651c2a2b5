"""Question in, cited answer out: the core that the CLI, the API and the evaluation share."""

from __future__ import annotations

import bisect
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path

from qa.answer import assemble
from qa.corpus import load_corpus, make_article
from qa.documents import (
    Previous,
    delete_article,
    discard_previous,
    keep_previous,
    restore_previous,
    text_document,
    validate_doc_id,
    validate_text,
    validate_title,
    write_article,
    write_record_file,
)
from qa.embed import Embedder, make_embedder
from qa.errors import (
    Conflict,
    CorpusError,
    DocumentNotFound,
    IndexBusy,
    IndexCorrupt,
    IndexMissing,
    IndexStale,
    InvalidQuestion,
    PreconditionFailed,
)
from qa.index import prepare_put, staleness
from qa.ingest import Document
from qa.journal import DeleteRecord
from qa.read import Reader, make_reader, min_confidence_for, resolve_reader_kind
from qa.retrieve import Retriever
from qa.settings import Settings
from qa.store import Store, StoreView, make_store
from qa.types import Answer, Article, Filters, Hit

log = logging.getLogger(__name__)


def check_if_match(article: Article | None, doc_id: str, if_match: str | None) -> None:
    """Refuse a write whose ``If-Match`` (the sha256 the writer last saw, or ``*``: it must exist)
    does not fit the article as stored now, so the last writer does not silently win.

    Raises:
        PreconditionFailed: it does not fit.
    """
    if if_match is None:
        return
    wanted = {t.strip().removeprefix("W/").strip('"') for t in if_match.split(",") if t.strip()}
    if "*" in wanted and article is not None:
        return
    if article is None:
        raise PreconditionFailed(f"If-Match {if_match!r}: there is no article {doc_id!r} (it was deleted, or never "
                                 "written)")
    if article.sha256 not in wanted:
        raise PreconditionFailed(f"If-Match {if_match!r}: article {doc_id!r} has changed (its sha256 is now "
                                 f"{article.sha256}); read it again and retry")


def make_filters(since: str | None = None, until: str | None = None, source: str | None = None,
                 doc_ids: list[str] | None = None) -> Filters:
    """Filters from user input; dates in any form dateparser reads ("2025-06-01", "1 June 2025").

    Raises:
        InvalidQuestion: a date that is not one, or ``since`` after ``until``.
    """
    from qa.ingest.dates import iso_date

    def day(value: str | None, name: str) -> str | None:
        if value is None or not value.strip():
            return None
        parsed = iso_date(value)
        if parsed is None:
            raise InvalidQuestion(f"{name} {value!r} is not a date; use YYYY-MM-DD")
        return parsed

    lo, hi = day(since, "since"), day(until, "until")
    if lo is not None and hi is not None and lo > hi:
        raise InvalidQuestion(f"since {lo} is after until {hi}")
    return Filters(lo, hi, source.strip() if source and source.strip() else None,
                   frozenset(doc_ids) if doc_ids is not None else None)


def validate_question(question: str, max_chars: int) -> str:
    """The question stripped; raises InvalidQuestion if blank or too long."""
    if not isinstance(question, str) or not question.strip():
        raise InvalidQuestion('the question is empty; ask something, e.g. "When was the second Istanbul round?"')
    if len(question) > max_chars:
        raise InvalidQuestion(
            f"the question has {len(question)} characters; the limit is {max_chars} (QA_MAX_QUESTION_CHARS)"
        )
    return question.strip()


class QAPipeline:
    """Embedder + store + retriever + reader, loaded once. The store (``QA_STORE``, :mod:`qa.store`)
    holds the index; the pipeline talks to it only through the store protocol.

    Example:
        >>> p = QAPipeline(Settings()); p.load()  # doctest: +SKIP
        >>> p.ask("When was the second Istanbul round?").text
        'the 2nd of June'
    """

    def __init__(self, settings: Settings, embedder: Embedder | None = None, reader: Reader | None = None,
                 store: Store | None = None) -> None:
        self._settings = settings
        self._own_store = store is None
        self.store: Store = store if store is not None else make_store(settings)
        self.embedder: Embedder = embedder if embedder is not None else make_embedder(settings)
        self._reader = reader
        self._readers: dict[str, Reader] = {}
        self.index: StoreView | None = None
        self.retriever: Retriever | None = None
        self.corpus_dir: Path = settings.corpus_dir
        self._write_lock = threading.Lock()  # writes are serialised; questions never wait on it
        self._stored_version: Hashable | None = None  # the stored state the loaded index matches
        self._compaction: threading.Thread | None = None
        self._sorted_ids: tuple[StoreView, list[str]] | None = None  # a snapshot's doc ids, sorted (pages)

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, value: Settings) -> None:
        """New settings; a store the pipeline made itself follows them (a store passed in stays)."""
        self._settings = value
        if self._own_store:
            self.store = make_store(value)

    # ------------------------------------------------------------ loading
    @property
    def reader(self) -> Reader:
        if self._reader is None:
            raise RuntimeError("pipeline not loaded; call load() first")
        return self._reader

    def get_reader(self, kind: str | None) -> Reader:
        """The default reader, or another kind (``span``/``transformers``), loaded once."""
        if kind is None or kind == "auto" or kind == getattr(self.reader, "name", None):
            return self.reader
        if kind not in self._readers:
            r = make_reader(self.settings, self.embedder, kind)
            r.load()
            self._readers[kind] = r
        return self._readers[kind]

    def load(
        self,
        corpus_dir: Path | str | None = None,
        rebuild: bool = True,
        notify: Callable[[str], None] | None = None,
        show_progress: bool = False,
    ) -> None:
        """Load models and the index; (re)build the index from the corpus folder
        (:meth:`resolve_corpus`) when it is missing, stale or corrupt and ``rebuild`` is true.
        ``notify`` receives one-line status messages."""
        if notify is not None and hasattr(self.embedder, "notify"):
            self.embedder.notify = notify  # a one-time ONNX export says so
        self.embedder.load()
        corpus = self.resolve_corpus(corpus_dir)
        self.corpus_dir = corpus
        self.set_index(self.ensure_index(corpus, rebuild, notify, show_progress))
        if self._reader is None:
            self._reader = make_reader(self.settings, self.embedder, resolve_reader_kind(self.settings), notify)
        self._reader.load()

    def resolve_corpus(self, corpus_dir: Path | str | None = None) -> Path:
        """The corpus folder: ``corpus_dir`` if given, else ``QA_CORPUS_DIR`` (or a
        ``Settings(corpus_dir=...)``), else the folder the existing index was built from, else
        ``seeds/``.

        Raises:
            CorpusError: the index's own folder is the choice and it no longer exists.
        """
        if corpus_dir is not None:
            return Path(corpus_dir)
        s = self.settings
        if "corpus_dir" in s.model_fields_set:
            return s.corpus_dir
        recorded = self.store.recorded_corpus()
        if recorded is None:
            return s.corpus_dir
        if not recorded.is_dir():
            raise CorpusError(f"the index in {self.store.location()} was built from {recorded}/, which no longer "
                              "exists; point to the articles with --corpus DIR or QA_CORPUS_DIR")
        return recorded

    def set_index(self, index: StoreView) -> None:
        """Swap in a new index (readers of the old one finish with it)."""
        self.retriever = self.store.retriever(index, self.embedder)
        self.index = index
        self._stored_version = self.store.version(index)

    # ------------------------------------------------------------ other processes
    def index_changed_on_disk(self) -> bool:
        """Whether another process changed the index folder since this one loaded or wrote it: a
        new version in ``CURRENT`` (a rebuild) or journal records this process did not write."""
        if self.index is None or self._stored_version is None:
            return False
        latest = self.store.latest_version()
        return latest is not None and latest != self._stored_version

    def _reload_if_changed(self) -> bool:
        """Reload the index when another process changed it (call with the writer lock held)."""
        if not self.index_changed_on_disk():
            return False
        fresh = self.store.open()
        log.info("the index in %s was changed by another process; reloaded it (%d articles)",
                 self.store.location(), len(fresh.articles))
        self.set_index(fresh)
        return True

    def refresh(self) -> bool:
        """Pick up what another process wrote to the index folder (a `qa index build`, a second
        server's writes); True if the index was reloaded. Skipped (False) while this process or
        another one is writing: the next call or write catches up."""
        if not self.index_changed_on_disk() or not self._write_lock.acquire(blocking=False):
            return False
        try:
            with self.store.writer("reloading the index", 0.0):
                return self._reload_if_changed()
        except IndexBusy:
            return False
        finally:
            self._write_lock.release()

    @contextlib.contextmanager
    def _writing(self, what: str, refresh: bool = True) -> Iterator[None]:
        """Be the one writer of the index folder: this process's writes and compaction, then
        other processes (the folder's file lock), each waited for at most ``write_timeout_s``.
        With ``refresh``, an index changed by another process meanwhile is reloaded first, so a
        write never goes into a version a rebuild has replaced.

        Raises:
            IndexBusy: the wait ran out (the message says who holds the index).
        """
        timeout = self.settings.write_timeout_s
        deadline = time.monotonic() + timeout
        if not self._write_lock.acquire(timeout=timeout):
            raise IndexBusy(f"another write or a compaction of the index is still running after {timeout:g}s "
                            "(QA_WRITE_TIMEOUT_S); retry shortly")
        try:
            with self.store.writer(what, deadline - time.monotonic()):
                if refresh:
                    self._reload_if_changed()
                yield
        finally:
            self._write_lock.release()

    def ensure_index(
        self,
        corpus: Path,
        rebuild: bool = True,
        notify: Callable[[str], None] | None = None,
        show_progress: bool = False,
    ) -> StoreView:
        """The stored index, rebuilt from ``corpus`` if missing, stale or corrupt. A store that
        holds its own articles (Milvus) is the source of truth: ``corpus`` only fills it when empty."""
        s = self.settings
        if not self.store.keeps_corpus_files:
            return self._ensure_own_store(corpus, rebuild, notify, show_progress)
        where = self.store.location()
        previous: StoreView | None = None
        try:
            index = self.store.open()
            articles = load_corpus(corpus, s.max_file_bytes)
            why = staleness(
                index.manifest,
                {a.doc_id: a.sha256 for a in articles},
                self.embedder.name,
                s.chunk_tokens,
                s.chunk_overlap_tokens,
            )
            if why is None:
                return index
            built_from = self.store.recorded_corpus()
            if built_from is not None and built_from.resolve() != corpus.resolve():
                if not rebuild:
                    raise IndexStale(f"the index in {where} was built from {built_from}/, not {corpus}/ "
                                     f"({why}); use --corpus {built_from}, or run `qa index build {corpus}`")
                if notify:
                    notify(f"the index in {where} was built from {built_from}/, not {corpus}/ ({why}); "
                           f"rebuilding it from {corpus}/ as asked (--corpus or QA_CORPUS_DIR; without them "
                           f"the indexed folder is used)")
            elif not rebuild:
                raise IndexStale(f"the index in {where} is stale: {why}; run `qa index build {corpus}`")
            elif notify:
                notify(f"index is stale ({why}); rebuilding from {corpus}/")
            previous = index
        except IndexMissing:
            if not rebuild:
                raise
            if notify:
                notify(f"no index yet; building it from {corpus}/")
            articles = load_corpus(corpus, s.max_file_bytes)
        except IndexCorrupt as e:
            if not rebuild:
                raise
            if notify:
                notify(f"{e}; rebuilding from {corpus}/")
            articles = load_corpus(corpus, s.max_file_bytes)
        return self.build(articles, previous, show_progress, corpus)

    def _ensure_own_store(self, corpus: Path, rebuild: bool, notify: Callable[[str], None] | None,
                          show_progress: bool) -> StoreView:
        """A store holding its own articles: opened as it is, filled from ``corpus`` only when empty;
        built with another model or other chunk settings, it is stale (never rebuilt behind the back
        of the replicas writing to it)."""
        s = self.settings
        try:
            index = self.store.open()
        except IndexMissing:
            if not rebuild:
                raise
            if notify:
                notify(f"the store {self.store.location()} is empty; filling it from {corpus}/")
            return self.build(load_corpus(corpus, s.max_file_bytes), None, show_progress, corpus)
        m = index.base_manifest
        why = staleness(m, m.fingerprints, self.embedder.name, s.chunk_tokens, s.chunk_overlap_tokens)
        if why is not None:
            raise IndexStale(f"the store {self.store.location()} is stale: {why}; run `qa index build <corpus folder>` "
                             "to rebuild it")
        return index

    def build(
        self,
        articles: list[Article],
        previous: StoreView | None = None,
        show_progress: bool = False,
        corpus: Path | None = None,
    ) -> StoreView:
        """Build and save an index of ``articles`` in the store (read from the folder ``corpus``,
        which the manifest records; default: the pipeline's corpus folder); atomically in the
        local store."""
        self.embedder.load()
        with self._writing("building the index", refresh=False):
            return self._build_locked(articles, previous, show_progress, corpus)

    def _build_locked(
        self, articles: list[Article], previous: StoreView | None, show_progress: bool, corpus: Path | None
    ) -> StoreView:
        return self.store.build(articles, self.embedder, previous, show_progress,
                                corpus if corpus is not None else self.corpus_dir)

    # ------------------------------------------------------------ asking
    def search(self, question: str, k: int | None = None, filters: Filters | None = None) -> list[Hit]:
        """Retrieved chunks for ``question``, best first (of the articles ``filters`` lets through)."""
        q = validate_question(question, self.settings.max_question_chars)
        if self.retriever is None:
            raise RuntimeError("pipeline not loaded; call load() first")
        return self.retriever.retrieve(q, k if k is not None else self.settings.top_k, filters)

    def ask_batch(self, questions: list[str], top_k: int | None = None, reader: str | None = None,
                  filters: Filters | None = None, n_best: int = 1) -> list[Answer]:
        """Answers to ``questions``, in order; retrieval and reading are batched. With
        ``filters``, only the articles they let through are retrieved and cited."""
        if self.retriever is None:
            raise RuntimeError("pipeline not loaded; call load() first")
        t0 = time.perf_counter()
        qs = [validate_question(q, self.settings.max_question_chars) for q in questions]
        k = top_k if top_k is not None else self.settings.top_k
        if k < 1:
            raise ValueError(f"top_k must be >= 1, got {k}")
        retriever = self.retriever  # one index for the whole batch, even if a write swaps it
        reader_obj = self.get_reader(reader)
        t1 = time.perf_counter()
        qvecs = retriever.embed_questions(qs)
        t2 = time.perf_counter()
        hits = retriever.retrieve_batch(qs, k, qvecs, filters)
        t3 = time.perf_counter()
        readings = reader_obj.read_batch(qs, hits)
        t4 = time.perf_counter()
        answers = [
            assemble(q, r, h, retriever.index.articles, min_confidence_for(self.settings, reader_obj),
                     self.settings.max_citations, n_best)
            for q, r, h in zip(qs, readings, hits, strict=True)
        ]
        t5 = time.perf_counter()
        n = max(len(qs), 1)
        timings = {
            "embed": (t2 - t1) * 1000.0 / n,
            "retrieve": (t3 - t2) * 1000.0 / n,
            "read": (t4 - t3) * 1000.0 / n,
            "assemble": (t5 - t4) * 1000.0 / n,
        }
        per_q = (t5 - t0) * 1000.0 / n
        for a in answers:
            a.latency_ms = per_q
            a.timings = dict(timings)
        return answers

    def ask(self, question: str, top_k: int | None = None, reader: str | None = None,
            filters: Filters | None = None, n_best: int = 1) -> Answer:
        """The cited answer to one question (``text`` None when the articles do not answer it);
        with ``n_best`` > 1, also the best ``n_best`` answers in ``alternatives``."""
        return self.ask_batch([question], top_k, reader, filters, n_best)[0]

    # ------------------------------------------------------------ documents
    def _loaded_index(self) -> StoreView:
        if self.index is None:
            raise RuntimeError("pipeline not loaded; call load() first")
        return self.index

    def documents(self) -> list[Article]:
        """Articles in the index, by doc_id."""
        idx = self._loaded_index()
        return [idx.articles[d] for d in sorted(idx.articles)]

    def document_page(self, limit: int, after: str | None = None) -> tuple[list[Article], str | None, int]:
        """Up to ``limit`` articles by doc_id after ``after`` (a cursor: the last id of the previous
        page), the cursor of the next page (None at the end), and the number of articles. The
        sorted ids are kept per index snapshot, so a page costs O(limit + log n)."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        idx = self._loaded_index()
        if self._sorted_ids is None or self._sorted_ids[0] is not idx or self.store.live:
            self._sorted_ids = (idx, sorted(idx.articles))
        ids = self._sorted_ids[1]
        lo = bisect.bisect_right(ids, after) if after is not None else 0
        page = ids[lo : lo + limit]
        more = lo + limit < len(ids)
        return [idx.articles[d] for d in page], (page[-1] if more and page else None), len(ids)

    def document(self, doc_id: str) -> Article:
        """One article; raises DocumentNotFound."""
        art = self._loaded_index().articles.get(doc_id)
        if art is None:
            raise DocumentNotFound(f"no article with doc_id {doc_id!r}")
        return art

    def _writable_index(self) -> StoreView:
        """The current snapshot, reloaded from disk first if a failed write left memory half-updated."""
        current = self._loaded_index()
        if not self.store.consistent(current):
            log.warning("the in-memory index was left half-updated by a failed write; reloading it from disk")
            current = self.store.open()
            self.set_index(current)
        return current

    def add_document(self, doc_id: str, text: str, title: str | None = None,
                     if_match: str | None = None) -> tuple[Article, bool]:
        """Add or replace an article: durable file write first, then one journal record (local
        store); one write to the store that holds the articles (Milvus).

        Returns the stored article and whether it replaced an existing one. Questions asked
        meanwhile see the index without the write until it is in the journal and applied.
        """
        s = self.settings
        validate_doc_id(doc_id, s.max_doc_id_chars)
        stored = validate_text(text, s.max_document_chars)  # exactly as given: a title is metadata
        title = validate_title(title, s.max_title_chars)
        if title is not None and title.strip():
            return self.add_converted(doc_id, text_document(stored, title), if_match)[:2]
        article, replaced, _ = self._put(doc_id, lambda: write_article(self.corpus_dir, doc_id, stored),
                                         lambda path: make_article(doc_id, stored, path), if_match=if_match)
        return article, replaced

    def add_converted(self, doc_id: str, doc: Document, if_match: str | None = None) -> tuple[Article, bool, bool]:
        """Add or replace an article converted from a page, a PDF, a record or a URL
        (:mod:`qa.ingest`), stored as ``<doc_id>.json`` with its metadata.

        Returns the stored article, whether it replaced one, and whether it was unchanged (the
        same original, by SHA-256: nothing is written).
        """
        s = self.settings
        validate_doc_id(doc_id, s.max_doc_id_chars)
        validate_text(doc.text, s.max_document_chars)
        if doc.title is not None:
            doc.title = validate_title(doc.title[: s.max_title_chars], s.max_title_chars)
        return self._put(doc_id, lambda: write_record_file(self.corpus_dir, doc_id, doc),
                         lambda path: make_article(doc_id, doc.text, path, doc), unless_sha256=doc.sha256,
                         if_match=if_match)

    def _put(self, doc_id: str, write_file: Callable[[], Path], make: Callable[[str], Article],
             unless_sha256: str | None = None, if_match: str | None = None) -> tuple[Article, bool, bool]:
        s = self.settings
        with self._writing(f"writing article {doc_id!r}"):
            current = self._writable_index()
            replaced = doc_id in current.articles
            check_if_match(current.articles.get(doc_id), doc_id, if_match)
            if replaced and unless_sha256 is not None and current.articles[doc_id].sha256 == unless_sha256:
                return current.articles[doc_id], True, True
            if not self.store.keeps_corpus_files:  # the store holds the article's text: no file
                article = make("")
                updated = self.store.write(
                    current, prepare_put(article, self.embedder, s.chunk_tokens, s.chunk_overlap_tokens))
                self.set_index(updated)
                self._compact_if_due()  # a Milvus store: seal this replica's writes now and then
                return article, replaced, False
            # A failed journal append (a full disk) puts the old file back and leaves no record:
            # an error answer means nothing changed. A crash (no exception handler runs) leaves
            # the new file, which the next start indexes if its record is not in the journal.
            previous = keep_previous(self.corpus_dir, doc_id)
            try:
                article = make(str(write_file()))
                record = prepare_put(article, self.embedder, s.chunk_tokens, s.chunk_overlap_tokens)
                updated = self.store.write(current, record)
            except Exception:
                restore_previous(self.corpus_dir, doc_id, previous)
                raise
            finally:
                _discard_quietly(previous)
            # Applied and durable from here on: nothing below may turn it into an error answer.
            self.set_index(updated)
            self._compact_if_due()
        return article, replaced, False

    def delete_document(self, doc_id: str) -> None:
        """Remove an article from the corpus folder and the index; raises DocumentNotFound."""
        validate_doc_id(doc_id, self.settings.max_doc_id_chars)
        with self._writing(f"deleting article {doc_id!r}"):
            current = self._writable_index()
            if doc_id not in current.articles:
                raise DocumentNotFound(f"no article with doc_id {doc_id!r}")
            if len(current.articles) == 1:
                raise Conflict(f"{doc_id!r} is the last article; an index needs at least one (add another first)")
            if not self.store.keeps_corpus_files:
                self.set_index(self.store.write(current, DeleteRecord(doc_id)))
                self._compact_if_due()
                return
            previous = keep_previous(self.corpus_dir, doc_id)
            try:
                delete_article(self.corpus_dir, doc_id)
                updated = self.store.write(current, DeleteRecord(doc_id))
            except Exception:
                restore_previous(self.corpus_dir, doc_id, previous)
                raise
            finally:
                _discard_quietly(previous)
            self.set_index(updated)
            self._compact_if_due()

    def _compact_if_due(self) -> None:
        """Save a fresh full version when the journal has grown past the settings' bounds: in a
        background thread (``compact_in_background``), so the write that crossed the bound is
        answered at once; writes issued meanwhile wait for it at most ``write_timeout_s``.

        The writes are already durable in the journal, so a failed compaction (a full disk) is
        logged and changes nothing: the journal goes on, and a later write tries again.
        """
        s = self.settings
        if not self.store.needs_compaction(self._loaded_index()):
            return
        if not s.compact_in_background:
            self._compact_logged()
            return
        if self._compaction is not None and self._compaction.is_alive():
            return
        self._compaction = threading.Thread(target=self._compact_in_background, name="qa-compaction", daemon=True)
        self._compaction.start()

    def _compact_in_background(self) -> None:
        try:
            with self._writing("compacting the index"):
                if self.store.needs_compaction(self._loaded_index()):
                    self._compact_logged()
        except Exception as e:  # IndexBusy or anything else: the journal keeps every write
            log.warning("compacting the index journal did not run (%s: %s); the journal keeps every write and a "
                        "later write tries again", type(e).__name__, e)

    def _compact_logged(self) -> None:
        try:
            self._compact_locked(self._loaded_index())
        except Exception as e:  # a write that is applied is never reported as failed
            log.warning("compacting the index journal failed (%s: %s); the journal keeps every write",
                        type(e).__name__, e)

    def wait_for_compaction(self, timeout_s: float | None = None) -> None:
        """Wait until a background compaction (if one runs) has finished."""
        thread = self._compaction
        if thread is not None:
            thread.join(timeout_s)

    def compact(self) -> StoreView:
        """Save the current index as a fresh version with an empty journal: as it is, or rebuilt
        (vectors reused) when too many rows are deleted or the corpus has outgrown flat search."""
        with self._writing("compacting the index"):
            return self._compact_locked(self._loaded_index())

    def _compact_locked(self, index: StoreView) -> StoreView:
        index = self.store.compact(index, self.embedder, self.corpus_dir)
        self.set_index(index)
        return index


def _discard_quietly(previous: Previous | None) -> None:
    """Drop the kept copy of a replaced article; a failure is logged (the write itself is done)."""
    try:
        discard_previous(previous)
    except OSError as e:
        log.warning("could not remove the kept copy of a replaced article (%s); it is a hidden file the corpus "
                    "loader skips", e)
