"""Evaluation edge (``qa eval``): score the pipeline on the hand-written test set or SQuAD data.

Answer metrics follow the official SQuAD v2.0 script (normalised exact match and token F1, max
over gold answers, split into HasAns / NoAns), with one product rule on top: an abstention
(``Answer.text is None``) is right exactly when the question is unanswerable. Around them sit the
product's own checks: abstention precision/recall, whether citations point at the exact article
text, whether they point at a gold article, and retrieval recall@k / MRR of the gold articles.

Example::

    qa eval --testset tests/data/qa_testset.jsonl --reader span --predictions preds.jsonl
    qa eval --squad ../shared/squad/squad-dev-subset-v2.0.json --closed --limit 500 --json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from qa.answer import assemble, retrieved_articles
from qa.calibration import RIGHT_F1, expected_calibration_error, risk_coverage, sigmoid
from qa.corpus import make_article
from qa.embed import Embedder, make_embedder
from qa.errors import InvalidQuestion, QAError, UsageError
from qa.pipeline import QAPipeline, validate_question
from qa.read import Reader, make_reader, min_confidence_for, resolve_reader_kind
from qa.read.answerability import DEFAULT_FEATURES, FEATURES, WordStats, check_features, feature_values
from qa.settings import Settings
from qa.squad_data import SquadDataError, read_squad
from qa.squad_metrics import max_over_golds
from qa.types import Answer, Article, Chunk, Hit

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 16
DEFAULT_WORST = 10
# Below this many questions a progress bar is more noise than help.
PROGRESS_MIN_QUESTIONS = 50
RECALL_AT = (1, 5)


class EvalDataError(QAError):
    """An evaluation file is missing, unreadable or not in the expected layout."""


# ================================================================ gold data


@dataclass(frozen=True)
class GoldQuestion:
    """One evaluation question: its gold answer texts (empty = unanswerable) and gold articles."""

    id: str
    question: str
    answers: tuple[str, ...]
    doc_ids: tuple[str, ...]

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass(frozen=True)
class SquadSet:
    """A SQuAD file as questions plus its paragraphs as articles (``"<title>/<i>"``)."""

    questions: list[GoldQuestion]
    articles: list[Article]


def _str_list(value: object) -> list[str] | None:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        return None
    return value


def load_testset(path: Path | str) -> list[GoldQuestion]:
    """Questions of a JSONL test set (``{"id","question","answers":[...],"doc_ids":[...]}`` a line).

    Raises:
        EvalDataError: the file is missing or unreadable, or a line is not such an object.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise EvalDataError(f"test set {path} does not exist; pass a JSONL file to --testset") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EvalDataError(f"cannot read test set {path} ({type(e).__name__}: {e})") from e
    out: list[GoldQuestion] = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise EvalDataError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(rec, dict):
            raise EvalDataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        qid, question = rec.get("id"), rec.get("question")
        answers, doc_ids = _str_list(rec.get("answers")), _str_list(rec.get("doc_ids"))
        if not isinstance(qid, str) or not isinstance(question, str):
            raise EvalDataError(f"{where}: 'id' and 'question' must be strings")
        if answers is None or doc_ids is None:
            raise EvalDataError(f"{where}: 'answers' and 'doc_ids' must be lists of strings")
        out.append(GoldQuestion(qid, question, tuple(dict.fromkeys(answers)), tuple(dict.fromkeys(doc_ids))))
    if not out:
        raise EvalDataError(f"test set {path} holds no question")
    return out


def load_squad(path: Path | str) -> SquadSet:
    """Read official SQuAD v1.1/v2.0 JSON (:func:`qa.squad_data.read_squad`): every paragraph becomes
    an article with doc_id ``"<title>/<paragraph index within its article>"`` and its context as
    exact text.

    Raises:
        EvalDataError: the file is missing, not JSON, or not in the SQuAD layout.
    """
    try:
        paragraphs = read_squad(path)
    except SquadDataError as e:
        raise EvalDataError(str(e)) from e
    questions: list[GoldQuestion] = []
    articles: list[Article] = []
    seen: set[str] = set()
    for para in paragraphs:
        doc_id = f"{para.title}/{para.index}"
        if doc_id in seen:
            raise EvalDataError(f"{path}: data[{para.entry}].paragraphs[{para.index}]: title {para.title!r} occurs "
                                f"twice, so doc_id {doc_id!r} is ambiguous")
        seen.add(doc_id)
        articles.append(make_article(doc_id, para.context))
        for q in para.questions:
            golds = tuple(dict.fromkeys(text for text, _ in q.answers))
            questions.append(GoldQuestion(q.id, q.question, golds, (doc_id,)))
    if not questions:
        raise EvalDataError(f"SQuAD file {path} holds no question")
    return SquadSet(questions, articles)


# ================================================================ metrics (pure)


def answer_scores(prediction: str | None, golds: Sequence[str]) -> tuple[float, float]:
    """(exact, f1) of one prediction: abstaining (None) is right iff there is no gold answer,
    answering an unanswerable question is wrong, otherwise SQuAD EM/F1 max over the golds."""
    if prediction is None:
        right = 0.0 if golds else 1.0
        return right, right
    if not golds:
        return 0.0, 0.0
    return max_over_golds(prediction, golds)


def mean(values: Sequence[float]) -> float | None:
    """Arithmetic mean, None for no values (a rate over an empty group is undefined, not 0)."""
    return sum(values) / len(values) if values else None


def abstention_precision_recall(
    abstained: Sequence[bool], answerable: Sequence[bool]
) -> tuple[float | None, float | None]:
    """Precision and recall of abstaining (positive class): correct abstentions over abstentions,
    and over unanswerable questions. None where the denominator is zero."""
    if len(abstained) != len(answerable):
        raise ValueError(f"got {len(abstained)} predictions for {len(answerable)} questions")
    correct = sum(1 for a, ans in zip(abstained, answerable, strict=True) if a and not ans)
    n_abstained = sum(abstained)
    n_unanswerable = sum(1 for ans in answerable if not ans)
    return (correct / n_abstained if n_abstained else None, correct / n_unanswerable if n_unanswerable else None)


def citation_valid(answer: Answer, article_texts: Mapping[str, str]) -> bool:
    """True if every citation's text is ``article_text[start:end]`` of its article and the first
    citation's text is the answer itself."""
    if answer.text is None or not answer.citations or answer.citations[0].text != answer.text:
        return False
    for c in answer.citations:
        text = article_texts.get(c.doc_id)
        if text is None or not 0 <= c.start <= c.end <= len(text) or text[c.start : c.end] != c.text:
            return False
    return True


def citation_validity(answers: Sequence[Answer], article_texts: Mapping[str, str]) -> float | None:
    """Fraction of answered predictions whose citations are all exact (see :func:`citation_valid`)."""
    return mean([float(citation_valid(a, article_texts)) for a in answers if a.text is not None])


def citation_support(answers: Sequence[Answer], golds: Sequence[GoldQuestion]) -> float | None:
    """Fraction of answered, answerable predictions whose first citation is in a gold article."""
    return mean(
        [
            float(bool(a.citations) and a.citations[0].doc_id in g.doc_ids)
            for a, g in zip(answers, golds, strict=True)
            if a.text is not None and g.answerable
        ]
    )


def gold_rank(retrieved: Sequence[str], gold_doc_ids: Sequence[str]) -> int | None:
    """1-based rank of the first gold article among ``retrieved``, or None if none was retrieved."""
    gold = set(gold_doc_ids)
    for rank, doc_id in enumerate(retrieved, 1):
        if doc_id in gold:
            return rank
    return None


def recall_at_k(ranks: Sequence[int | None], k: int) -> float | None:
    """Fraction of questions with a gold article in the first ``k`` retrieved."""
    return mean([float(r is not None and r <= k) for r in ranks])


def mean_reciprocal_rank(ranks: Sequence[int | None]) -> float | None:
    """Mean of 1/rank of the first gold article (0 when it was not retrieved)."""
    return mean([1.0 / r if r is not None else 0.0 for r in ranks])


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), interpolating linearly between ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be in 0..100, got {q}")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class EvalMetrics:
    """Every number ``qa eval`` reports. Rates are in 0..1; None where a rate is undefined
    (no unanswerable question, no abstention, retrieval in closed mode, ...)."""

    mode: str
    reader: str
    questions: int
    answerable: int
    unanswerable: int
    answered: int
    exact: float
    f1: float
    has_ans_exact: float | None
    has_ans_f1: float | None
    no_ans_exact: float | None
    no_ans_f1: float | None
    abstain_precision: float | None
    abstain_recall: float | None
    citation_validity: float | None
    citation_support: float | None
    recall_at_1: float | None
    recall_at_5: float | None
    mrr: float | None
    latency_p50_ms: float
    latency_p95_ms: float
    questions_per_s: float
    wall_s: float
    # Confidence: every question's top candidate (answered or withheld) with its probability.
    ece: float | None = None
    risk_coverage: list[dict[str, float]] = field(default_factory=list)
    min_confidence: float | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready values, rates rounded to 4 decimals and times to 2."""
        out: dict[str, object] = {}
        for key, value in asdict(self).items():
            if isinstance(value, float):
                value = round(value, 2 if key.endswith(("_ms", "_s")) else 4)
            elif key == "risk_coverage":
                value = [{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()} for row in value]
            out[key] = value
        return out


def compute_metrics(
    golds: Sequence[GoldQuestion],
    answers: Sequence[Answer],
    article_texts: Mapping[str, str],
    *,
    mode: str,
    reader: str,
    wall_s: float,
    retrieval: bool = True,
    rankings: Sequence[Sequence[str]] | None = None,
) -> EvalMetrics:
    """All metrics of a run; ``retrieval=False`` (closed mode) leaves the retrieval ones None.

    Retrieval is scored on ``rankings`` (each question's retrieved articles, best first) where
    given, else on the articles of the passages each answer read."""
    if len(golds) != len(answers):
        raise ValueError(f"got {len(answers)} predictions for {len(golds)} questions")
    if not golds:
        raise ValueError("no questions to score")
    scores = [answer_scores(a.text, g.answers) for a, g in zip(answers, golds, strict=True)]
    has = [s for s, g in zip(scores, golds, strict=True) if g.answerable]
    no = [s for s, g in zip(scores, golds, strict=True) if not g.answerable]
    precision, recall = abstention_precision_recall([a.text is None for a in answers], [g.answerable for g in golds])
    ranked = rankings if rankings is not None else [a.retrieved for a in answers]
    if len(ranked) != len(golds):
        raise ValueError(f"got {len(ranked)} rankings for {len(golds)} questions")
    ranks = [gold_rank(r, g.doc_ids) for r, g in zip(ranked, golds, strict=True) if g.answerable]
    latencies = [a.latency_ms for a in answers]
    confidences, right = candidate_correctness(golds, answers)
    return EvalMetrics(
        mode=mode,
        reader=reader,
        questions=len(golds),
        answerable=len(has),
        unanswerable=len(no),
        answered=sum(a.text is not None for a in answers),
        exact=sum(s[0] for s in scores) / len(scores),
        f1=sum(s[1] for s in scores) / len(scores),
        has_ans_exact=mean([s[0] for s in has]),
        has_ans_f1=mean([s[1] for s in has]),
        no_ans_exact=mean([s[0] for s in no]),
        no_ans_f1=mean([s[1] for s in no]),
        abstain_precision=precision,
        abstain_recall=recall,
        citation_validity=citation_validity(answers, article_texts),
        citation_support=citation_support(answers, golds),
        recall_at_1=recall_at_k(ranks, RECALL_AT[0]) if retrieval else None,
        recall_at_5=recall_at_k(ranks, RECALL_AT[1]) if retrieval else None,
        mrr=mean_reciprocal_rank(ranks) if retrieval else None,
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        questions_per_s=len(golds) / wall_s if wall_s > 0 else 0.0,
        wall_s=wall_s,
        ece=expected_calibration_error(confidences, right),
        risk_coverage=risk_coverage(confidences, right),
        min_confidence=next((a.min_confidence for a in answers if a.min_confidence is not None), None),
    )


def candidate_text(answer: Answer) -> str | None:
    """The answer's text, or the best candidate's where it was withheld (None: the reader found none)."""
    if answer.text is not None:
        return answer.text
    return answer.candidate.text if answer.candidate is not None else None


def candidate_correctness(
    golds: Sequence[GoldQuestion], answers: Sequence[Answer]
) -> tuple[list[float], list[bool]]:
    """Each question's top-candidate confidence and whether that candidate is right (token F1 >=
    ``RIGHT_F1`` against a gold answer; never for an unanswerable question), withheld or not."""
    confidences, right = [], []
    for g, a in zip(golds, answers, strict=True):
        text = candidate_text(a)
        confidences.append(float(a.score) if text is not None else 0.0)
        right.append(g.answerable and text is not None and answer_scores(text, g.answers)[1] >= RIGHT_F1)
    return confidences, right


# ================================================================ reports


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100.0 * x:.1f}%"


def format_table(m: EvalMetrics) -> str:
    """The metrics as a small human-readable table."""
    mrr = "n/a" if m.mrr is None else f"{m.mrr:.3f}"
    rows = [
        ("run", f"{m.mode}, reader {m.reader}"),
        (
            "questions",
            f"{m.questions}  (answerable {m.answerable}, unanswerable {m.unanswerable}; answered {m.answered})",
        ),
        ("exact match", f"{_pct(m.exact):>6}   HasAns {_pct(m.has_ans_exact):>6}   NoAns {_pct(m.no_ans_exact):>6}"),
        ("F1", f"{_pct(m.f1):>6}   HasAns {_pct(m.has_ans_f1):>6}   NoAns {_pct(m.no_ans_f1):>6}"),
        ("abstention", f"precision {_pct(m.abstain_precision)}   recall {_pct(m.abstain_recall)}"),
        ("citations", f"valid {_pct(m.citation_validity)}   in a gold article {_pct(m.citation_support)}"),
        ("retrieval", f"recall@1 {_pct(m.recall_at_1)}   recall@5 {_pct(m.recall_at_5)}   MRR {mrr}"),
        ("latency", f"p50 {m.latency_p50_ms:.1f} ms   p95 {m.latency_p95_ms:.1f} ms per question"),
        ("throughput", f"{m.questions_per_s:.2f} questions/s  ({m.questions} in {m.wall_s:.1f} s)"),
        ("calibration", f"expected calibration error {_pct(m.ece)} (10 bins; right = token F1 >= {RIGHT_F1:g})"
         + ("" if m.min_confidence is None else f"   min_confidence {m.min_confidence:.2f}")),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    if m.risk_coverage:
        lines.append("risk-coverage (the most confident share of the top candidates, and how many are right):")
        lines.append("  coverage  " + "  ".join(f"{r['coverage']:>5.0%}" for r in m.risk_coverage))
        lines.append("  right     " + "  ".join(f"{r['right']:>5.0%}" for r in m.risk_coverage))
        lines.append("  conf >=   " + "  ".join(f"{r['min_confidence']:>5.2f}" for r in m.risk_coverage))
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def worst_failures(golds: Sequence[GoldQuestion], answers: Sequence[Answer], n: int) -> list[str]:
    """One line per wrong prediction (EM 0), lowest F1 first, then most confident first."""
    wrong = []
    for i, (g, a) in enumerate(zip(golds, answers, strict=True)):
        em, f1 = answer_scores(a.text, g.answers)
        if em < 1.0:
            wrong.append((f1, -a.score, i))
    lines = []
    for f1, _, i in sorted(wrong)[:n]:
        g, a = golds[i], answers[i]
        gold = " | ".join(_one_line(x) for x in g.answers) if g.answerable else "<unanswerable>"
        pred = f"{_one_line(a.text)!r}" if a.text is not None else "<abstained>"
        lines.append(
            f"{g.id}  F1 {f1:.2f}  Q: {_one_line(g.question)}  gold: {gold}  predicted: {pred} ({a.score:.2f})"
        )
    return lines


# ================================================================ running


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``qa eval`` options."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--testset", type=Path, help="hand-written JSONL test set (e.g. tests/data/qa_testset.jsonl)")
    src.add_argument("--squad", type=Path, help="official SQuAD v1.1/v2.0 JSON; its paragraphs are the corpus")
    parser.add_argument("--corpus", type=Path, default=None, help="with --testset: folder of articles (default seeds/)")
    parser.add_argument(
        "--closed",
        action="store_true",
        help="with --squad: the reader sees only the question's own paragraph (no retrieval)",
    )
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N questions in file order")
    parser.add_argument("--predictions", type=Path, default=None, help="write one JSON prediction a line here")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object on stdout")
    parser.add_argument("--reader", choices=["auto", "transformers", "span"], default=None, help="which reader answers")
    parser.add_argument("--top-k", type=int, default=None, help="passages the reader sees (default 5)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"questions answered together (default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--worst", type=int, default=DEFAULT_WORST, help=f"failures to list (default {DEFAULT_WORST}; 0 for none)"
    )


def _check_args(args: argparse.Namespace) -> None:
    for name, low in (("limit", 1), ("batch_size", 1), ("worst", 0), ("top_k", 1)):
        value = getattr(args, name, None)
        if value is not None and value < low:
            raise UsageError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
    if args.closed and args.squad is None:
        raise UsageError("--closed needs --squad (the test set has no per-question paragraph)")
    if args.squad is not None and args.corpus is not None:
        raise UsageError("--corpus applies to --testset only; a SQuAD file is its own corpus")


def _valid_questions(golds: list[GoldQuestion], max_chars: int) -> list[GoldQuestion]:
    """Questions with their text stripped; blank or over-long ones skipped with a warning."""
    out = []
    for g in golds:
        try:
            out.append(GoldQuestion(g.id, validate_question(g.question, max_chars), g.answers, g.doc_ids))
        except InvalidQuestion as e:
            log.warning("skipping question %s: %s", g.id, e)
    if not out:
        raise EvalDataError("no valid question to evaluate")
    return out


PredictionSink = Callable[[GoldQuestion, Answer], None]


@contextmanager
def _prediction_sink(path: Path | None) -> Iterator[PredictionSink]:
    """A function writing one JSONL prediction (``Answer.to_dict()`` plus ``id``), or a no-op."""
    if path is None:
        yield lambda g, a: None
        return
    try:
        fh: IO[str] = path.open("w", encoding="utf-8")
    except OSError as e:
        raise EvalDataError(f"cannot write predictions to {path} ({e.strerror or e})") from e

    def write(g: GoldQuestion, a: Answer) -> None:
        fh.write(json.dumps({"id": g.id, **a.to_dict()}, ensure_ascii=False) + "\n")

    with fh:
        yield write


def answer_all(
    golds: Sequence[GoldQuestion],
    answer_batch: Callable[[list[GoldQuestion]], list[Answer]],
    batch_size: int,
    sink: PredictionSink,
) -> tuple[list[Answer], float]:
    """Answers to every question in batches, in order, and the wall-clock seconds it took."""
    from tqdm import tqdm

    show = sys.stderr.isatty() and len(golds) >= PROGRESS_MIN_QUESTIONS
    answers: list[Answer] = []
    t0 = time.perf_counter()
    with tqdm(total=len(golds), unit="q", file=sys.stderr, disable=not show, desc="eval") as bar:
        for i in range(0, len(golds), batch_size):
            batch = list(golds[i : i + batch_size])
            got = answer_batch(batch)
            for g, a in zip(batch, got, strict=True):
                sink(g, a)
            answers.extend(got)
            bar.update(len(batch))
    return answers, time.perf_counter() - t0


def whole_paragraph_hit(article: Article) -> Hit:
    """The article as the single retrieved passage (closed-book reading)."""
    return Hit(Chunk(article.doc_id, 0, len(article.text), article.text), score=1.0, dense=1.0)


def read_closed(
    reader: Reader, batch: list[GoldQuestion], articles: Mapping[str, Article], settings: Settings
) -> list[Answer]:
    """Answers read from each question's own paragraph only, assembled as the pipeline does."""
    t0 = time.perf_counter()
    hits = [[whole_paragraph_hit(articles[g.doc_ids[0]])] for g in batch]
    questions = [g.question for g in batch]
    readings = reader.read_batch(questions, hits)
    answers = [
        assemble(q, r, h, articles, min_confidence_for(settings, reader), settings.max_citations)
        for q, r, h in zip(questions, readings, hits, strict=True)
    ]
    per_q = (time.perf_counter() - t0) * 1000.0 / max(len(batch), 1)
    for a in answers:
        a.latency_ms = per_q
    return answers


def run(
    args: argparse.Namespace,
    settings: Settings,
    say: Callable[[str], None],
    *,
    embedder: Embedder | None = None,
    reader: Reader | None = None,
) -> int:
    """``qa eval``: answer every question, print the metrics (and worst failures), return 0.

    ``embedder`` and ``reader`` replace the configured models (tests pass fakes).
    """
    _check_args(args)
    if args.reader is not None:
        settings = settings.model_copy(update={"reader": args.reader})
    emb = embedder if embedder is not None else make_embedder(settings)
    label = getattr(reader, "name", None) or resolve_reader_kind(settings)
    # Read the questions before any model loads, so a bad file fails in a second.
    if args.testset is not None:
        golds = _valid_questions(load_testset(args.testset)[: args.limit], settings.max_question_chars)
        with _prediction_sink(args.predictions) as sink:
            answers, metrics = _eval_testset(golds, args, settings, say, emb, reader, label, sink)
    else:
        data = load_squad(args.squad)
        golds = _valid_questions(data.questions[: args.limit], settings.max_question_chars)
        rdr = reader if reader is not None else make_reader(settings, emb, resolve_reader_kind(settings))
        with _prediction_sink(args.predictions) as sink:
            if args.closed:
                answers, metrics = _eval_squad_closed(golds, data, args, settings, say, rdr, label, sink)
            else:
                answers, metrics = _eval_squad_open(golds, data, args, settings, say, emb, rdr, label, sink)

    if args.json:
        print(json.dumps(metrics.to_dict(), ensure_ascii=False), flush=True)
        say(format_table(metrics))
    else:
        print(format_table(metrics))
    failures = worst_failures(golds, answers, args.worst)
    if failures:
        show: Callable[[str], None] = say if args.json else print
        show(f"worst {len(failures)} failures (id, F1, question, gold, predicted):")
        for line in failures:
            show("  " + line)
    if args.predictions is not None:
        say(f"wrote {len(answers)} predictions to {args.predictions}")
    return 0


def _ask_batches(
    pipeline: QAPipeline, golds: list[GoldQuestion], args: argparse.Namespace, sink: PredictionSink
) -> tuple[list[Answer], float]:
    return answer_all(
        golds, lambda b: pipeline.ask_batch([g.question for g in b], top_k=args.top_k), args.batch_size, sink
    )


def retrieval_rankings(pipeline: QAPipeline, golds: Sequence[GoldQuestion], batch_size: int = 64) -> list[list[str]]:
    """Each question's articles among its first ``max(RECALL_AT)`` retrieved passages, best first:
    retrieval recall is measured at that depth whatever number of passages the reader reads."""
    retriever = pipeline.retriever
    if retriever is None:
        raise RuntimeError("the pipeline has no index loaded")
    out: list[list[str]] = []
    for i in range(0, len(golds), batch_size):
        questions = [g.question for g in golds[i : i + batch_size]]
        for hits in retriever.retrieve_batch(questions, max(RECALL_AT)):
            out.append(retrieved_articles(hits))
    return out


def _eval_testset(
    golds: list[GoldQuestion],
    args: argparse.Namespace,
    settings: Settings,
    say: Callable[[str], None],
    emb: Embedder,
    reader: Reader | None,
    label: str,
    sink: PredictionSink,
) -> tuple[list[Answer], EvalMetrics]:
    corpus = args.corpus if args.corpus is not None else settings.corpus_dir
    pipeline = QAPipeline(settings, embedder=emb, reader=reader)
    pipeline.load(corpus, notify=say, show_progress=sys.stderr.isatty())
    if pipeline.index is None:
        raise RuntimeError("pipeline.load() left no index")
    texts = {d: a.text for d, a in pipeline.index.articles.items()}
    unknown = sorted({d for g in golds for d in g.doc_ids} - set(texts))
    if unknown:
        say(
            f"warning: {len(unknown)} gold doc_ids are not in {corpus}/ (e.g. {unknown[0]}); "
            "retrieval and citation support will count them as misses"
        )
    answers, wall = _ask_batches(pipeline, golds, args, sink)
    return answers, compute_metrics(golds, answers, texts, mode="testset", reader=label, wall_s=wall,
                                    rankings=retrieval_rankings(pipeline, golds))


def _eval_squad_open(
    golds: list[GoldQuestion],
    data: SquadSet,
    args: argparse.Namespace,
    settings: Settings,
    say: Callable[[str], None],
    emb: Embedder,
    reader: Reader,
    label: str,
    sink: PredictionSink,
) -> tuple[list[Answer], EvalMetrics]:
    texts = {a.doc_id: a.text for a in data.articles}
    answers, wall, rankings = open_answers(golds, data, args, settings, say, emb, reader, sink)
    return answers, compute_metrics(golds, answers, texts, mode="squad-open", reader=label, wall_s=wall,
                                    rankings=rankings)


def open_answers(
    golds: list[GoldQuestion],
    data: SquadSet,
    args: argparse.Namespace,
    settings: Settings,
    say: Callable[[str], None],
    emb: Embedder,
    reader: Reader,
    sink: PredictionSink,
) -> tuple[list[Answer], float, list[list[str]]]:
    """The pipeline's answers over a throw-away index of the SQuAD paragraphs (the product's own
    index/ is never touched), the seconds they took and each question's retrieved articles."""
    with tempfile.TemporaryDirectory(prefix="qa-eval-index-") as tmp:
        pipeline = QAPipeline(settings.model_copy(update={"index_dir": Path(tmp)}), embedder=emb, reader=reader)
        say(f"indexing {len(data.articles)} paragraphs of {args.squad} into a temporary index")
        pipeline.set_index(pipeline.build(data.articles, show_progress=sys.stderr.isatty()))
        reader.load()
        answers, wall = _ask_batches(pipeline, golds, args, sink)
        rankings = retrieval_rankings(pipeline, golds)
    return answers, wall, rankings


# ================================================================ calibration (qa calibrate)


def add_calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``qa calibrate`` options."""
    parser.add_argument("--squad", type=Path, required=True,
                        help="held-out SQuAD v2.0 JSON (e.g. the reader's six validation titles); open mode")
    parser.add_argument("--model", type=Path, default=None, help="reader model folder (default: QA_READER_MODEL)")
    parser.add_argument("--top-k", type=int, default=None, help="passages the reader sees (default: QA_TOP_K)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--limit", type=int, default=None, help="the first N questions only")
    parser.add_argument("--word-stats", type=Path, nargs="+", default=None, metavar="TRAINING_DATA",
                        help="the reader's training data (SQuAD layout, .json/.json.gz/.json.xz): build the word "
                             "statistics of the answerability features from its paragraphs (the --squad file's "
                             "titles left out) into the model folder; default: the folder's word_stats.tsv.gz")
    parser.add_argument("--features", type=_feature_list, default=DEFAULT_FEATURES, metavar="NAMES",
                        help="answerability features weighed beside the reader's score, comma-separated (needs "
                             "word statistics; default: " + ",".join(DEFAULT_FEATURES) + ", chosen by "
                             "leave-one-title-out F1 on the validation titles; known: " + ",".join(FEATURES) +
                             "), or 'none': the score alone (Platt scaling)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the fit without writing calibration.json or word statistics")


def _feature_list(text: str) -> tuple[str, ...]:
    if text.strip() == "none":
        return ()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"no feature named in {text!r}; known: {', '.join(FEATURES)}, or none")
    try:
        check_features(names)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{e}, or none") from e
    return names


def _logit(p: float) -> float:
    p = min(max(p, 1e-15), 1.0 - 1e-15)
    return math.log(p / (1.0 - p))


def _word_stats(args: argparse.Namespace, data: SquadSet, model: Path, say: Callable[[str], None]) -> WordStats:
    """The answerability features' word statistics: built from ``--word-stats`` (the validation titles
    left out) or read from the model folder.

    Raises:
        EvalDataError: neither is there.
    """
    from tqdm import tqdm

    if args.word_stats:
        held_out = {a.doc_id.rsplit("/", 1)[0] for a in data.articles}
        paragraphs = (p.context for f in args.word_stats for p in read_squad(f) if p.title not in held_out)
        stats = WordStats.from_texts(tqdm(paragraphs, desc="word statistics", unit=" paragraphs",
                                          disable=not sys.stderr.isatty()))
        say(f"word statistics from {stats.paragraphs} training paragraphs ({len(stats.df)} words)")
        return stats
    stats_or_none = WordStats.load(model)
    if stats_or_none is None:
        raise EvalDataError(f"{model} has no word statistics for the answerability features; pass "
                            "--word-stats TRAINING_DATA... (the reader's training files), or --features none")
    return stats_or_none


def _answer_passage(ans: Answer) -> tuple[str, int, int] | None:
    """The text of the retrieved passage that holds the answer's (or withheld candidate's) span, and
    the span's offsets in it; None when the reader found nothing. Where chunks overlap, the best
    retrieved one that holds it (the reader may have read the span in the other)."""
    span = ans.citations[0] if ans.citations else ans.candidate
    if span is None:
        return None
    for hit in ans.passages:
        c = hit.chunk
        if c.doc_id == span.doc_id and c.start <= span.start and span.end <= c.start + len(c.text):
            return c.text, span.start - c.start, span.end - c.start
    return None


def _calibration_fit(rows: list[list[float]], right: list[bool], f1s: list[float], answerable: list[bool],
                     titles: list[int]) -> tuple[list[float], float, list[float], list[float], float | None]:
    """A logistic fit on ``rows`` (first column: the reader's score): weights, bias, in-sample
    probabilities, out-of-fold ones (fitted on one half of the titles, applied to the other: for the
    calibration error), and the leave-one-title-out F1: for each title, fitted and its threshold chosen
    on the others by the product's rule (None when some fit would see only right or only wrong answers)."""
    from qa.calibration import best_threshold, default_threshold, fit_logistic

    def apply(w: list[float], b: float, idx: list[int]) -> list[float]:
        return [sigmoid(b + sum(wk * v for wk, v in zip(w, rows[i], strict=True))) for i in idx]

    def fit_on(idx: list[int]) -> tuple[list[float], float] | None:
        if len({right[i] for i in idx}) < 2:
            return None
        return fit_logistic([rows[i] for i in idx], [right[i] for i in idx])

    every = list(range(len(rows)))
    w, b = fit_logistic(rows, right)
    probs = apply(w, b, every)
    cross = list(probs)
    for k in (0, 1):
        fit = fit_on([i for i in every if titles[i] % 2 != k])
        if fit is not None:
            for i in every:
                if titles[i] % 2 == k:
                    cross[i] = apply(*fit, [i])[0]
    f1_sum: float | None = 0.0
    for t in sorted(set(titles)):
        train = [i for i in every if titles[i] != t]
        test = [i for i in every if titles[i] == t]
        fit = fit_on(train)
        if fit is None or f1_sum is None:
            f1_sum = None
            continue
        th = default_threshold(apply(*fit, train), [f1s[i] for i in train], [answerable[i] for i in train])[0]
        f1_sum += best_threshold(apply(*fit, test), [f1s[i] for i in test], [answerable[i] for i in test],
                                 [th])[1] * len(test)
    return w, b, probs, cross, None if f1_sum is None else f1_sum / len(rows)


def _maybe(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def calibrate(args: argparse.Namespace, settings: Settings, say: Callable[[str], None]) -> int:
    """``qa calibrate``: fit the reader's calibration on the pipeline's top answers over held-out
    SQuAD questions in open mode (logistic over the reader's score and the answerability features,
    or Platt scaling of the score alone), choose the default ``min_confidence`` (the lowest threshold
    whose F1 is within one bootstrap standard error of the best), and
    write ``calibration.json`` (and the word statistics) and a calibration section into the model
    folder's card."""
    from qa.calibration import (
        Calibration,
        best_threshold,
        default_threshold,
        reliability_table,
        write_calibration_card,
    )
    _check_args(argparse.Namespace(limit=args.limit, batch_size=args.batch_size, worst=0, top_k=args.top_k,
                                   closed=False, squad=args.squad, corpus=None))
    model = args.model if args.model is not None else Path(settings.reader_model)
    if not (model / "config.json").is_file():
        raise EvalDataError(f"{model} is not a reader model folder (no config.json); pass --model DIR")
    if not args.features and args.word_stats:
        raise EvalDataError("--word-stats feeds the answerability features; drop it, or name features")
    # Raw scores: no calibration, margin 0, nothing withheld, so a score is sigmoid(x) of the feature x.
    raw = settings.model_copy(update={"reader_model": str(model), "no_answer_margin": 0.0, "min_confidence": 0.0,
                                      "reader": "transformers"})
    data = load_squad(args.squad)
    stats = _word_stats(args, data, model, say) if args.features else None
    extra = tuple(args.features) if stats is not None else ()
    golds = _valid_questions(data.questions[: args.limit], raw.max_question_chars)
    emb = make_embedder(raw)
    reader = make_reader(raw, emb, "transformers")
    reader.load()
    setattr(reader, "calibration", None)  # noqa: B010 (the protocol has no calibration; this reader does)
    run_args = argparse.Namespace(squad=args.squad, top_k=args.top_k, batch_size=args.batch_size)
    answers, _, _ = open_answers(golds, data, run_args, raw, say, emb, reader, lambda g, a: None)
    rows, right, f1s, answerable, title_of = [], [], [], [], []
    titles = sorted({d.rsplit("/", 1)[0] for g in golds for d in g.doc_ids})
    title_no = {t: i for i, t in enumerate(titles)}
    for g, ans in zip(golds, answers, strict=True):
        text = candidate_text(ans)
        f1 = answer_scores(text, g.answers)[1] if text is not None and g.answerable else 0.0
        where = _answer_passage(ans) if stats is not None else None
        values = (feature_values(extra, g.question, *where, stats) if where is not None and stats is not None
                  else [0.0] * len(extra))
        rows.append([_logit(ans.score) if text is not None else -40.0, *values])
        right.append(bool(g.answerable and text is not None and f1 >= RIGHT_F1))
        f1s.append(f1)
        answerable.append(g.answerable)
        title_of.append(title_no[g.doc_ids[0].rsplit("/", 1)[0]])
    xs = [r[0] for r in rows]
    w, b, probs, cross, f1_loto = _calibration_fit(rows, right, f1s, answerable, title_of)
    threshold, f1_at, top_t, top_f1 = default_threshold(probs, f1s, answerable)
    fitted: dict[str, Any] = {
        "data": str(args.squad), "questions": len(golds), "answerable": sum(answerable),
        "mode": "open (retrieval over every paragraph of the file)",
        "top_k": args.top_k if args.top_k is not None else settings.top_k,
        "right": f"token F1 >= {RIGHT_F1:g} against a gold answer; never for an unanswerable question",
        "ece_uncalibrated_margin0": expected_calibration_error([sigmoid(x) for x in xs], right),
        "ece_in_sample": expected_calibration_error(probs, right),
        "ece_cross_fitted_by_title": expected_calibration_error(cross, right),
        "f1_at_min_confidence": f1_at,
        "min_confidence_rule": "the lowest threshold whose F1 is within one bootstrap standard error of the best",
        "best_f1_threshold": top_t, "best_f1": top_f1,
        "f1_leave_one_title_out": f1_loto,
        "f1_by_min_confidence": {f"{t:.1f}": best_threshold(probs, f1s, answerable, [t])[1]
                                 for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)},
        "reliability": reliability_table(probs, right),
        "risk_coverage": risk_coverage(probs, right),
        "reader_type_weight": float(getattr(reader, "type_weight", settings.reader_type_weight)),
    }
    if extra:
        # The same questions, the reader's score alone: what the answerability features add.
        _, _, base, base_cross, base_loto = _calibration_fit([[x] for x in xs], right, f1s, answerable, title_of)
        fitted["score_alone"] = {
            "ece_in_sample": expected_calibration_error(base, right),
            "ece_cross_fitted_by_title": expected_calibration_error(base_cross, right),
            "f1_at_min_confidence": default_threshold(base, f1s, answerable)[1],
            "best_f1": best_threshold(base, f1s, answerable)[1],
            "f1_leave_one_title_out": base_loto,
        }
        fitted["word_stats_paragraphs"] = stats.paragraphs if stats is not None else 0
    cal = Calibration(w[0], b, threshold, method="logistic" if extra else "platt", fitted_on=fitted,
                      extra=tuple(extra), weights=tuple(w[1:]))
    shown = " + ".join([f"{w[0]:.4f} x", *(f"{wk:.4f} {n}" for wk, n in zip(w[1:], extra, strict=True))])
    say(f"{cal.method} fit on {len(golds)} questions: p = sigmoid({shown} + {b:.4f}); ECE "
        f"{fitted['ece_in_sample']:.4f} in sample, {fitted['ece_cross_fitted_by_title']:.4f} cross-fitted by title "
        f"(uncalibrated sigmoid(x): {fitted['ece_uncalibrated_margin0']:.4f}); min_confidence {threshold:.2f} "
        f"gives F1 {f1_at:.4f} (the best, {top_f1:.4f} at {top_t:.2f}, is within one standard error; "
        f"{_maybe(f1_loto)} leave-one-title-out)")
    if extra:
        alone = fitted["score_alone"]
        say(f"the reader's score alone: F1 {alone['f1_at_min_confidence']:.4f} (best {alone['best_f1']:.4f}) "
            f"({_maybe(alone['f1_leave_one_title_out'])} leave-one-title-out), ECE {alone['ece_in_sample']:.4f} "
            f"({alone['ece_cross_fitted_by_title']:.4f} cross-fitted)")
    print(json.dumps(asdict(cal), indent=2))
    if not args.dry_run:
        if stats is not None and args.word_stats:
            say(f"wrote {stats.save(model)}")
        path = cal.save(model)
        write_calibration_card(model, cal)
        say(f"wrote {path} and the calibration section of {model / 'README.md'}")
    return 0


def _eval_squad_closed(
    golds: list[GoldQuestion],
    data: SquadSet,
    args: argparse.Namespace,
    settings: Settings,
    say: Callable[[str], None],
    reader: Reader,
    label: str,
    sink: PredictionSink,
) -> tuple[list[Answer], EvalMetrics]:
    by_id = {a.doc_id: a for a in data.articles}
    texts = {a.doc_id: a.text for a in data.articles}
    say(f"reading {len(golds)} questions of {args.squad} against their own paragraphs (no retrieval)")
    reader.load()  # the span reader loads the embedder it needs; the transformers reader needs none
    answers, wall = answer_all(golds, lambda b: read_closed(reader, b, by_id, settings), args.batch_size, sink)
    return answers, compute_metrics(
        golds, answers, texts, mode="squad-closed", reader=label, wall_s=wall, retrieval=False
    )
