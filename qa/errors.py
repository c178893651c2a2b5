"""Domain errors raised by the core and translated at the edges (CLI exit codes, HTTP statuses)."""


class QAError(Exception):
    """Base class: the message is one line that says what to do next."""


class CorpusError(QAError):
    """The corpus folder is missing, empty, or holds no readable article."""


class IndexMissing(QAError):
    """No built index where one was expected."""


class IndexStale(QAError):
    """The index was built from other articles, another model or other chunk settings."""


class IndexCorrupt(QAError):
    """An index file is truncated, garbled or does not match its manifest."""


class StoreUnavailable(QAError):
    """The store (a Milvus server) cannot be reached or refused the operation."""


class ModelUnavailable(QAError):
    """A model could not be found or loaded."""


class InvalidQuestion(QAError):
    """The question is empty, blank or over the length limit."""


class InvalidDocument(QAError):
    """A document id or text is not acceptable."""


class DocumentNotFound(QAError):
    """No article with that id."""


class IndexBusy(QAError):
    """Another write, a compaction or another process holds the index longer than a write may wait."""


class IngestError(QAError):
    """An input (a file, a record, a URL) that cannot become an article; the message names it."""


class Conflict(QAError):
    """The request conflicts with the current state (deleting the index's last article)."""


class UsageError(QAError, ValueError):
    """A command-line argument or option that is not acceptable (exit 2); a plain ValueError
    from inside the product is an internal error (exit 3)."""


class PreconditionFailed(QAError):
    """A write's If-Match does not name the article's current version (its sha256)."""
