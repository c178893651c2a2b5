"""Command-line edge: ``ask "..."`` and ``qa index|search|eval|train-reader|serve``.

Domain errors become one line on stderr and a non-zero exit code; no traceback reaches a user
(``QA_DEBUG=1`` shows it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from qa.errors import CorpusError, InvalidQuestion, QAError, UsageError

if TYPE_CHECKING:
    from qa.pipeline import QAPipeline
    from qa.settings import Settings
    from qa.types import Answer, Citation, Filters, Hit

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


def _quiet_libraries() -> None:
    """Keep model-loading chatter (weight bars, hub notices) off the user's terminal."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)  # libraries that lower their own loggers' levels stay quiet
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("faiss", "sentence_transformers", "transformers", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _settings(args: argparse.Namespace) -> Settings:
    from qa.settings import Settings

    overrides: dict[str, object] = {}
    for attr, key in (
        ("index", "index_dir"),
        ("corpus", "corpus_dir"),
        ("top_k", "top_k"),
        ("reader", "reader"),
        ("reader_model", "reader_model"),
        ("min_confidence", "min_confidence"),
    ):
        value = getattr(args, attr, None)
        if value is not None:
            overrides[key] = value
    return Settings(**overrides)  # type: ignore[arg-type]


def _run(fn: Callable[[], int]) -> int:
    """Run a command, turning every error into one line and an exit code."""
    from pydantic import ValidationError

    try:
        return fn()
    except (InvalidQuestion, UsageError, ValidationError) as e:
        if isinstance(e, ValidationError):
            first = e.errors()[0]
            _say(f"error: setting {'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
        else:
            _say(f"error: {e}")
        return EXIT_USAGE
    except QAError as e:
        _say(f"error: {e}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except BrokenPipeError:
        # the reader of our output went away (`ask ... | head -1`): stop quietly, as Unix tools do;
        # point stdout at /dev/null so that the interpreter's final flush does not fail again
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE
    except Exception as e:
        if os.environ.get("QA_DEBUG"):
            raise
        _say(f"internal error: {type(e).__name__}: {e} (set QA_DEBUG=1 for details)")
        return EXIT_INTERNAL


def _load_pipeline(settings: Settings, corpus: Path | None = None) -> QAPipeline:
    from qa.pipeline import QAPipeline

    p = QAPipeline(settings)
    p.load(corpus, notify=_say, show_progress=sys.stderr.isatty())  # None: QA_CORPUS_DIR, else the indexed folder
    return p


# ---------------------------------------------------------------- human output
def _colour() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def highlight(context: str, start: int, end: int, colour: bool) -> str:
    """``context`` with ``context[start:end]`` marked (ANSI bold yellow, or >>...<<)."""
    start, end = max(0, start), min(len(context), end)
    on, off = ("\x1b[1;33m", "\x1b[0m") if colour else (">>", "<<")
    return context[:start] + on + context[start:end] + off + context[end:]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability between 0 and 1, got {text!r}")
    return value


def format_answer(answer: Answer, colour: bool) -> str:
    lines = []
    if answer.text is None:
        if answer.candidate is not None:
            below = f" < {answer.min_confidence:.2f} required" if answer.min_confidence is not None else ""
            lines.append(
                "Not in the articles: no passage answers this question with enough confidence "
                f"(best candidate {_one_line(answer.candidate.text)!r} in {answer.candidate.doc_id}, "
                f"probability {answer.score:.2f}{below})."
            )
        else:
            lines.append("Not in the articles: no passage answers this question.")
        if answer.passages:
            lines.append("Closest passages:")
            for h in answer.passages[:3]:
                snippet = _one_line(h.chunk.text)
                lines.append(f"  {h.chunk.doc_id} [{h.chunk.start}:{h.chunk.end}] (score {h.score:.3f})")
                lines.append(f"      {snippet[:240]}{'…' if len(snippet) > 240 else ''}")
        lines.extend(_alternatives(answer))
        return "\n".join(lines)
    bold = ("\x1b[1m", "\x1b[0m") if colour else ("", "")
    when = resolved_label(answer.citations[0]) if answer.citations else None
    shown = f"{answer.text} ({when})" if when else answer.text
    lines.append(f"{bold[0]}{shown}{bold[1]}  (confidence {answer.score:.2f})")
    for i, c in enumerate(answer.citations, 1):
        rel = c.start - c.context_start
        ctx = highlight(c.context, rel, rel + (c.end - c.start), colour)
        about = ", ".join(x for x in (c.title, c.date, c.source) if x)
        lines.append(f"  [{i}] {c.doc_id} [{c.start}:{c.end}]" + (f"  {about}" if about else ""))
        if c.url:
            lines.append(f"      {c.url}")
        lines.append(f"      {_one_line(ctx)}")
    lines.extend(_alternatives(answer))
    return "\n".join(lines)


def _alternatives(answer: Answer) -> list[str]:
    if not answer.alternatives:
        return []
    out = [f"The {len(answer.alternatives)} best answers:"]
    for i, a in enumerate(answer.alternatives, 1):
        where = f"{a.citations[0].doc_id} [{a.citations[0].start}:{a.citations[0].end}]" if a.citations else ""
        out.append(f"  {i}. {_one_line(a.text)}  (probability {a.score:.2f})  {where}")
    return out


def resolved_label(c: Citation) -> str | None:
    """ "2 June 2025" (or a range) for a citation whose span is a relative date, else None."""
    import datetime as dt

    from qa.dates import Resolved

    start = c.resolved_date or c.resolved_start
    end = c.resolved_date or c.resolved_end
    if not start or not end:
        return None
    return Resolved(dt.date.fromisoformat(start), dt.date.fromisoformat(end)).label()


def format_hits(hits: list[Hit]) -> str:
    lines = []
    for i, h in enumerate(hits, 1):
        c = h.chunk
        snippet = _one_line(c.text)
        lines.append(f"{i:>2}. {c.doc_id} [{c.start}:{c.end}]  rrf {h.score:.4f}  cosine {h.dense:.3f}")
        lines.append(f"    {snippet[:300]}{'…' if len(snippet) > 300 else ''}")
    return "\n".join(lines)


# ---------------------------------------------------------------- ask
def _filter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", default=None, metavar="DATE", help="only articles dated on or after DATE")
    parser.add_argument("--until", default=None, metavar="DATE", help="only articles dated on or before DATE")
    parser.add_argument("--source", default=None, metavar="NAME", help="only articles from this outlet")


def _filters(args: argparse.Namespace) -> Filters:
    from qa.pipeline import make_filters

    return make_filters(args.since, args.until, args.source)


def ask_main(argv: Sequence[str] | None = None) -> int:
    """``ask "question"``: print a cited answer."""
    parser = argparse.ArgumentParser(prog="ask", description="Answer a question from the articles, with citations.")
    parser.add_argument("question", nargs="+", help="the question (quote it)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("-k", "--top-k", type=_positive, default=None,
                        help="passages the reader sees (default: QA_TOP_K, 3)")
    parser.add_argument("--reader", choices=["auto", "transformers", "span"], default=None, help="which reader answers")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="folder of articles (default: QA_CORPUS_DIR, else the one the index was built from, "
                        "else seeds/)")
    parser.add_argument("--index", type=Path, default=None, help="index folder (default index/)")
    parser.add_argument(
        "--min-confidence", type=_probability, default=None, metavar="P",
        help="withhold answers less likely than P to be right (0..1; default: QA_MIN_CONFIDENCE, else the "
        "reader's calibrated default)",
    )
    parser.add_argument("--n-best", type=_positive, default=1, metavar="N",
                        help="also list the N best answers with their probabilities")
    _filter_arguments(parser)
    args = parser.parse_args(argv)
    _quiet_libraries()

    def run() -> int:
        from qa.pipeline import validate_question

        settings = _settings(args)
        filters = _filters(args)
        if "QA_FAST_START" not in os.environ:
            # One question per process: start-up is the whole wait, so no torch import (see Settings).
            settings = settings.model_copy(update={"fast_start": True})
        question = validate_question(" ".join(args.question), settings.max_question_chars)
        answer = _load_pipeline(settings, args.corpus).ask(question, filters=filters, n_best=args.n_best)
        if args.json:
            print(json.dumps(answer.to_dict(), ensure_ascii=False))
        else:
            print(format_answer(answer, _colour()))
        return EXIT_OK

    return _run(run)


# ---------------------------------------------------------------- qa
def _corpus_arg(args: argparse.Namespace) -> Path | None:
    """The folder given positionally or as ``--corpus`` (both: they must agree)."""
    given = [p for p in (args.corpus_dir, getattr(args, "corpus_opt", None)) if p is not None]
    if len(given) == 2 and given[0] != given[1]:
        raise UsageError(f"two corpus folders given ({given[0]} and --corpus {given[1]}); give one")
    return given[0] if given else None


def _cmd_index_build(args: argparse.Namespace) -> int:
    from qa.corpus import load_corpus
    from qa.errors import IndexCorrupt, IndexMissing, IndexStale
    from qa.pipeline import QAPipeline
    from qa.store import StoreView

    settings = _settings(args)
    p = QAPipeline(settings)
    corpus = p.resolve_corpus(_corpus_arg(args))
    if args.if_empty:
        try:
            held = p.store.open()
        except (IndexMissing, IndexCorrupt):
            pass  # nothing complete stored: fill it
        else:
            print(f"{p.store.location()} already holds an index ({len(held.articles)} articles, {held.n_chunks} "
                  "chunks); left as it is (--if-empty)")
            return EXIT_OK
    articles = load_corpus(corpus, settings.max_file_bytes)
    previous: StoreView | None = None
    if not args.full:
        try:
            previous = p.store.open()
        except (IndexMissing, IndexCorrupt, IndexStale):
            previous = None  # nothing to reuse: a full build
    _say(f"building index of {len(articles)} articles from {corpus}/ into {p.store.location()}")
    index = p.build(articles, previous, show_progress=sys.stderr.isatty(), corpus=corpus)
    m = index.base_manifest
    where = getattr(index, "path", None) or p.store.location()
    print(
        f"indexed {len(index.articles)} articles, {index.n_chunks} chunks "
        f"({m.index_type} index, {m.embed_model}, dim {m.dim}) "
        f"in {where}"
    )
    return EXIT_OK


def _cmd_index_status(args: argparse.Namespace) -> int:
    from qa.corpus import load_corpus
    from qa.index import staleness
    from qa.pipeline import QAPipeline
    from qa.store import make_store

    settings = _settings(args)
    store = make_store(settings)
    m = store.status_manifest()
    print(
        f"index {store.location()}: {len(m.fingerprints)} articles, {m.n_chunks} chunks, "
        f"{m.index_type}, model {m.embed_model} (dim {m.dim}), "
        f"chunks {m.chunk_tokens} tokens / overlap {m.chunk_overlap_tokens}"
    )
    if m.corpus_dir:
        print(f"built from {m.corpus_dir}/")
    try:
        corpus = QAPipeline(settings, store=store).resolve_corpus(_corpus_arg(args))
        fps = {a.doc_id: a.sha256 for a in load_corpus(corpus, settings.max_file_bytes)}
    except CorpusError as e:
        print(f"corpus: {e}")
        return EXIT_ERROR
    why = staleness(m, fps, settings.embed_model, settings.chunk_tokens, settings.chunk_overlap_tokens)
    print(f"up to date with {corpus}/" if why is None else f"stale against {corpus}/: {why}")
    return EXIT_OK if why is None else EXIT_ERROR


def _cmd_search(args: argparse.Namespace) -> int:
    settings = _settings(args)
    p = _load_pipeline(settings)
    hits = p.search(" ".join(args.query), args.k, _filters(args))
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "doc_id": h.chunk.doc_id,
                        "start": h.chunk.start,
                        "end": h.chunk.end,
                        "score": h.score,
                        "cosine": h.dense,
                        "text": h.chunk.text,
                    }
                    for h in hits
                ],
                ensure_ascii=False,
            )
        )
    else:
        print(format_hits(hits))
    return EXIT_OK


def _cmd_add(args: argparse.Namespace) -> int:
    from qa.ingest.add import add_items

    settings = _settings(args)
    p = _load_pipeline(settings)
    report = add_items(p, args.items, say=_say, progress=sys.stderr.isatty(), max_file_bytes=settings.max_file_bytes)
    print(report.summary())
    return EXIT_OK if not report.failed else EXIT_ERROR


def _cmd_train(args: argparse.Namespace) -> int:
    from qa.train import main as train_main

    return int(train_main(args.train_args))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", type=Path, default=None, help="index folder (default index/)")


def qa_main(argv: Sequence[str] | None = None) -> int:
    """``qa``: build indexes, search, evaluate, train, serve."""
    parser = argparse.ArgumentParser(prog="qa", description="Question answering over a folder of articles.")
    sub = parser.add_subparsers(dest="command", required=True)

    idx = sub.add_parser("index", help="build or inspect the index")
    idx_sub = idx.add_subparsers(dest="index_command", required=True)
    b = idx_sub.add_parser("build", help="(re)build the index from a folder of articles")
    b.add_argument(
        "corpus_dir", nargs="?", type=Path, default=None,
        help="folder of articles (default: QA_CORPUS_DIR, else the folder the index was built from, "
        "else seeds/); or --corpus DIR, as in the other commands"
    )
    b.add_argument("--corpus", dest="corpus_opt", type=Path, default=None, help=argparse.SUPPRESS)
    b.add_argument("--full", action="store_true", help="re-embed every article (default: reuse unchanged ones)")
    b.add_argument("--if-empty", action="store_true",
                   help="only fill a store that holds no index yet; leave one that does as it is (for deployments: "
                   "API servers never fill a shared store themselves)")
    _common(b)
    b.set_defaults(func=_cmd_index_build)
    st = idx_sub.add_parser("status", help="say whether the index matches the corpus")
    st.add_argument("corpus_dir", nargs="?", type=Path, default=None)
    st.add_argument("--corpus", dest="corpus_opt", type=Path, default=None, help=argparse.SUPPRESS)
    _common(st)
    st.set_defaults(func=_cmd_index_status)

    s = sub.add_parser("search", help="show retrieved passages with scores")
    s.add_argument("query", nargs="+")
    s.add_argument("-k", "--top-k", dest="k", type=_positive, default=None,
                   help="passages to show (default: QA_TOP_K, 3, as for ask)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--corpus", type=Path, default=None)
    _filter_arguments(s)
    _common(s)
    s.set_defaults(func=_cmd_search)

    ad = sub.add_parser("add", help="add saved pages, PDFs, archives, text files, URLs or feeds to the index")
    ad.add_argument("items", nargs="+", metavar="PATH|URL",
                    help="files (.html, .pdf, .jsonl, .json, .txt, .md), folders of them, web pages or RSS/Atom feeds")
    ad.add_argument("--corpus", type=Path, default=None, help="the corpus folder the articles are stored in")
    _common(ad)
    ad.set_defaults(func=_cmd_add)

    from qa import evaluate

    ev = sub.add_parser("eval", help="evaluate on the hand-written test set or SQuAD data")
    evaluate.add_arguments(ev)
    _common(ev)
    ev.set_defaults(func=lambda a: evaluate.run(a, _settings(a), _say))

    cal = sub.add_parser("calibrate", help="fit the reader's confidence calibration on held-out SQuAD questions")
    evaluate.add_calibrate_arguments(cal)
    _common(cal)
    cal.set_defaults(func=lambda a: evaluate.calibrate(a, _settings(a), _say))

    from qa import bench

    bn = sub.add_parser("bench", help="measure latency, throughput, memory and scale (writes bench/results.json)")
    bench.add_arguments(bn)
    bn.set_defaults(func=lambda a: bench.run(a, _settings(a), _say))

    tr = sub.add_parser("train-reader", help="train an extractive QA reader on SQuAD JSON (see --help)", add_help=False)
    tr.add_argument("train_args", nargs=argparse.REMAINDER)
    tr.set_defaults(func=_cmd_train)

    sv = sub.add_parser("serve", help="serve the HTTP API")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--workers", type=int, default=1)
    sv.add_argument("--corpus", type=Path, default=None)
    _common(sv)
    sv.set_defaults(func=lambda a: _serve(a))

    sub.add_parser("ask", help="answer a question with citations (the same as the `ask` command)", add_help=False)

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["ask"]:
        return ask_main(argv[1:])
    if argv[:1] == ["train-reader"]:
        # argparse's REMAINDER drops a leading option (``--help``): hand every argument on as is.
        args = argparse.Namespace(func=_cmd_train, train_args=argv[1:])
    else:
        args = parser.parse_args(argv)
    _quiet_libraries()
    return _run(lambda: int(args.func(args)))


def _serve(args: argparse.Namespace) -> int:
    from qa.api.server import serve

    return serve(_settings(args), host=args.host, port=args.port, workers=args.workers)
