"""``qa bench`` options and orchestration: runs the parts, each scale size in a child process,
and writes the JSON and markdown reports."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from qa.bench.config import (
    COLD_RUNS,
    DEFAULT_REPEATS,
    DEFAULT_SIZES,
    DEFAULT_STORES,
    EMBED_SAMPLE_CHUNKS,
    MILVUS_MAX_CHUNKS,
    QUICK_EMBED_SAMPLE_CHUNKS,
    QUICK_QUESTIONS,
    QUICK_SIZES,
    QUICK_STORES,
    RECALL_AT,
    SAVE_MAX_CHUNKS,
    SCALE_CHILD_TIMEOUT_S,
    SCALE_QUERIES,
    STORE_KINDS,
    Say,
)
from qa.bench.measure import load_average, machine_info
from qa.bench.reader import bench_reader
from qa.bench.report import check_targets, format_markdown
from qa.bench.results import BenchReport, DenseRun, ScaleResult, StoreRun
from qa.bench.scale import SYNTHETIC_DESCRIPTION, bench_build, scale_one
from qa.bench.seeds import _COLD_PROBE, ask_command, bench_seeds, measure_cold_start, settings_env
from qa.bench.stores import MILVUS_KINDS, milvus_missing, milvus_server_command
from qa.embed import Embedder, make_embedder
from qa.errors import UsageError
from qa.pipeline import QAPipeline
from qa.read import Reader, make_reader, reader_model_available, resolve_reader_kind
from qa.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``qa bench`` options."""
    parser.add_argument("--quick", action="store_true",
                        help=f"seconds, not minutes: {QUICK_SIZES[0]} chunks, 1 repeat, {QUICK_QUESTIONS} questions")
    parser.add_argument("--sizes", default=None,
                        help="synthetic corpus sizes in chunks, comma-separated (default 10000,100000,1000000)")
    parser.add_argument("--repeats", type=int, default=None, help=f"repeats (default {DEFAULT_REPEATS}; quick 1)")
    parser.add_argument("--out", type=Path, default=Path("bench/results.json"),
                        help="JSON report (a markdown table is written next to it as .md)")
    parser.add_argument("--testset", type=Path, default=Path("tests/data/qa_testset.jsonl"),
                        help="questions to ask (JSONL with a 'question' field)")
    parser.add_argument("--corpus", type=Path, default=None, help="seed corpus folder (default seeds/)")
    parser.add_argument("--ann", default="hnsw,ivf", help="approximate indexes to compare with flat (hnsw,ivf)")
    parser.add_argument("--cold-runs", type=int, default=None,
                        help=f"fresh `ask` processes to time (default {COLD_RUNS}; quick 1; 0 skips)")
    parser.add_argument("--queries", type=int, default=None,
                        help=f"questions per synthetic size (default {SCALE_QUERIES})")
    parser.add_argument("--save-max", type=int, default=SAVE_MAX_CHUNKS,
                        help="largest size whose index is saved to measure bytes per chunk")
    parser.add_argument("--skip", default="", help="parts to skip, comma-separated: seeds,build,scale,reader")
    parser.add_argument("--stores", default=None,
                        help="stores filled with each synthetic corpus and compared side by side, comma-separated: "
                             f"{','.join(STORE_KINDS)} (default {','.join(DEFAULT_STORES)}; quick "
                             f"{','.join(QUICK_STORES)})")
    parser.add_argument("--milvus-max", type=int, default=MILVUS_MAX_CHUNKS,
                        help="largest synthetic size filled into the Milvus stores (Milvus Lite is pure Python: "
                             f"filling 100k chunks takes minutes; default {MILVUS_MAX_CHUNKS})")


@dataclass(frozen=True)
class BenchPlan:
    quick: bool
    sizes: tuple[int, ...]
    repeats: int
    cold_runs: int
    queries: int
    question_limit: int | None
    embed_sample: int
    ann: tuple[str, ...]
    save_max: int
    skip: frozenset[str]
    stores: tuple[str, ...] = ("local",)
    milvus_max: int = MILVUS_MAX_CHUNKS


def plan_from_args(args: argparse.Namespace) -> BenchPlan:
    """Validated options, quick-mode defaults filled in."""
    quick = bool(args.quick)
    if args.sizes is not None:
        try:
            sizes = tuple(int(x) for x in str(args.sizes).split(",") if x.strip())
        except ValueError:
            raise UsageError(f"--sizes must be comma-separated integers, got {args.sizes!r}") from None
    else:
        sizes = QUICK_SIZES if quick else DEFAULT_SIZES
    sizes = tuple(sorted(set(sizes)))
    if any(n < RECALL_AT * 4 for n in sizes):
        raise UsageError(f"--sizes must each be >= {RECALL_AT * 4}, got {args.sizes}")
    repeats = args.repeats if args.repeats is not None else (1 if quick else DEFAULT_REPEATS)
    cold = args.cold_runs if args.cold_runs is not None else (1 if quick else COLD_RUNS)
    queries = args.queries if args.queries is not None else (QUICK_QUESTIONS * 5 if quick else SCALE_QUERIES)
    milvus_max = getattr(args, "milvus_max", MILVUS_MAX_CHUNKS)
    for name, value, low in (("repeats", repeats, 1), ("cold-runs", cold, 0), ("queries", queries, 1),
                             ("save-max", args.save_max, 0), ("milvus-max", milvus_max, 0)):
        if value < low:
            raise UsageError(f"--{name} must be >= {low}, got {value}")
    ann = tuple(a.strip() for a in str(args.ann).split(",") if a.strip())
    bad = [a for a in ann if a not in ("hnsw", "ivf")]
    if bad:
        raise UsageError(f"--ann takes hnsw and/or ivf, got {bad[0]!r}")
    skip = frozenset(s.strip() for s in str(args.skip).split(",") if s.strip())
    unknown = skip - {"seeds", "build", "scale", "reader"}
    if unknown:
        raise UsageError(f"--skip takes seeds, build, scale, reader; got {sorted(unknown)[0]!r}")
    stores_arg = getattr(args, "stores", None)
    if stores_arg is not None:
        stores = tuple(dict.fromkeys(s.strip() for s in str(stores_arg).split(",") if s.strip()))
        bad_store = [s for s in stores if s not in STORE_KINDS]
        if bad_store or not stores:
            raise UsageError(f"--stores takes {', '.join(STORE_KINDS)}; got {stores_arg!r}")
    else:
        stores = QUICK_STORES if quick else DEFAULT_STORES
    return BenchPlan(quick=quick, sizes=sizes, repeats=repeats, cold_runs=cold, queries=queries,
                     question_limit=QUICK_QUESTIONS if quick else None,
                     embed_sample=QUICK_EMBED_SAMPLE_CHUNKS if quick else EMBED_SAMPLE_CHUNKS, ann=ann,
                     save_max=args.save_max, skip=skip, stores=stores, milvus_max=milvus_max)


def available_stores(stores: Sequence[str]) -> tuple[tuple[str, ...], list[str]]:
    """The stores of ``stores`` that can run here, and a note for each one left out."""
    notes: list[str] = []
    wanted = [s for s in stores if s in MILVUS_KINDS]
    missing = milvus_missing() if wanted else None
    if missing is not None:
        notes.append(f"Milvus stores skipped ({', '.join(wanted)}): {missing}")
        return tuple(s for s in stores if s not in MILVUS_KINDS), notes
    if "milvus-server" in stores and milvus_server_command() is None:
        notes.append("milvus-server skipped: no milvus-lite executable (pip install -e '.[milvus]')")
        return tuple(s for s in stores if s != "milvus-server"), notes
    return tuple(stores), notes


def load_questions(path: Path, limit: int | None) -> list[str]:
    """The ``question`` field of each JSONL line."""
    from qa.evaluate import load_testset

    return [g.question for g in load_testset(path)][:limit]


def _scale_in_child(n: int, settings: Settings, plan: BenchPlan, embed_rate: float | None, say: Say,
                    bytes_hint: dict[str, float] | None) -> ScaleResult:
    """Run :func:`scale_one` in a fresh interpreter (its own peak RSS), streaming its progress."""
    config = {"n": n, "ann": list(plan.ann), "queries": plan.queries, "save_max": plan.save_max,
              "embed_rate": embed_rate, "bytes_hint": bytes_hint, "settings": settings.model_dump(mode="json"),
              "stores": list(plan.stores), "milvus_max": plan.milvus_max}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
        cfg = f.name
    out_path = cfg + ".out"
    try:
        proc = subprocess.Popen([sys.executable, "-m", "qa.bench", "--scale-child", cfg, out_path],
                                stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        tail: list[str] = []
        for line in proc.stderr:
            line = line.rstrip()
            tail = [*tail[-20:], line]
            if line.startswith("  "):
                say(line)
        rc = proc.wait(timeout=SCALE_CHILD_TIMEOUT_S)
        if rc != 0:
            raise RuntimeError(f"scale benchmark at {n} chunks exited {rc}: " + " | ".join(tail[-5:]))
        data = json.loads(Path(out_path).read_text())
    finally:
        Path(cfg).unlink(missing_ok=True)
        Path(out_path).unlink(missing_ok=True)
    data["dense"] = [DenseRun(**d) for d in data["dense"]]
    data["stores"] = [StoreRun(**d) for d in data.get("stores", [])]
    return ScaleResult(**data)


def _scale_child_main(cfg_path: str, out_path: str) -> int:
    cfg = json.loads(Path(cfg_path).read_text())
    settings = Settings(**cfg["settings"])

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = scale_one(cfg["n"], settings, cfg["ann"], cfg["queries"], cfg["save_max"], cfg["embed_rate"], say,
                       cfg["bytes_hint"], cfg["stores"], cfg["milvus_max"])
    Path(out_path).write_text(json.dumps(asdict(result)))
    return 0


@contextlib.contextmanager
def _seed_index_dir(settings: Settings) -> Iterator[Settings]:
    tmp = tempfile.mkdtemp(prefix="qa-bench-seeds-")
    try:
        yield settings.model_copy(update={"index_dir": Path(tmp)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, settings: Settings, say: Say, *, embedder: Embedder | None = None,
        reader: Reader | None = None, cold_command: Sequence[str] | None = None) -> int:
    """``qa bench``: measure, print the table, write JSON and markdown; returns 0.

    ``embedder`` and ``reader`` replace the configured models (tests pass fakes); ``cold_command``
    replaces the ``ask`` entry point timed for the cold start.
    """
    plan = plan_from_args(args)
    stores, store_notes = available_stores(plan.stores) if "scale" not in plan.skip else (plan.stores, [])
    for note in store_notes:
        say(f"warning: {note}")
    plan = replace(plan, stores=stores)
    corpus = args.corpus if args.corpus is not None else settings.corpus_dir
    settings = settings.model_copy(update={"corpus_dir": Path(corpus)})
    questions = load_questions(args.testset, plan.question_limit)
    emb: Embedder = embedder if embedder is not None else make_embedder(settings)
    notes = [f"synthetic corpora: {SYNTHETIC_DESCRIPTION}",
             "scale sizes run in their own process: peak RSS includes the synthetic corpus being held in memory",
             "dense latencies are single-question searches (k = candidates_k) as `ask` does them; dense+BM25 is "
             "HybridRetriever.retrieve_batch on one question with its vector given (no embedding)",
             *store_notes]
    say(f"qa bench{' --quick' if plan.quick else ''}: {len(questions)} questions, sizes {list(plan.sizes)}, "
        f"{plan.repeats} repeats")
    report = BenchReport(
        machine=machine_info(), quick=plan.quick,
        settings={"top_k": settings.top_k, "candidates_k": settings.candidates_k,
                  "hnsw_min_chunks": settings.hnsw_min_chunks, "reader_model": settings.reader_model,
                  "reader_max_length": settings.reader_max_length, "reader_stride": settings.reader_stride,
                  "embed_model": settings.embed_model, "torch_threads": _torch_threads()},
        seeds=None, builds=[], embed_chunks_per_s=None, scale=[], reader=None, targets=[], notes=notes)
    out = Path(args.out)

    def write() -> str:
        """Write what is measured so far, so that a crash late in a long run loses only the rest."""
        report.targets = check_targets(report)
        table = format_markdown(report)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        out.with_suffix(".md").write_text(table + "\n", encoding="utf-8")
        return table

    with _seed_index_dir(settings) as s_tmp:
        pipeline = QAPipeline(s_tmp, embedder=emb, reader=reader)
        if not {"seeds", "reader"} <= plan.skip:
            say(f"loading the pipeline over {corpus}/ (temporary index)")
            pipeline.load(corpus)
        if "seeds" not in plan.skip:
            say("1/4 seeds: warm latency and throughput")
            report.seeds = bench_seeds(pipeline, questions, plan.repeats, say)
            if plan.cold_runs:
                say(f"    cold start: {plan.cold_runs} fresh `ask` processes")
                kind = resolve_reader_kind(s_tmp)
                env = settings_env(s_tmp.model_copy(update={"reader": kind}))
                report.seeds.cold_start = measure_cold_start(
                    cold_command if cold_command is not None else ask_command(),
                    [sys.executable, "-c", _COLD_PROBE], questions[0], env, plan.cold_runs)
            write()
        if "reader" not in plan.skip and not reader_model_available(s_tmp.reader_model):
            notes.append(f"reader part skipped: no QA model at {s_tmp.reader_model} (set QA_READER_MODEL)")
        elif "reader" not in plan.skip:
            say("2/4 reader: ours vs HF pipeline vs forward pass")
            rdr = pipeline.reader
            if getattr(rdr, "name", None) != "transformers":
                rdr = make_reader(s_tmp, emb, "transformers")
                rdr.load()
            hits = [pipeline.search(q) for q in questions]
            report.reader = bench_reader(rdr, s_tmp, questions, hits, plan.repeats, say)
            write()
        del pipeline
        gc.collect()
    if "build" not in plan.skip:
        say("3/4 index build with the real embedder")
        report.builds, report.embed_chunks_per_s = bench_build(emb, settings, Path(corpus), plan.embed_sample)
        write()
    if "scale" not in plan.skip:
        for n in plan.sizes:
            say(f"4/4 scale: {n:,} synthetic chunks")
            hint = next((sc.bytes_per_chunk for sc in reversed(report.scale) if sc.bytes_measured), None)
            try:
                report.scale.append(_scale_in_child(n, settings, plan, report.embed_chunks_per_s, say, hint))
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                notes.append(f"scale {n} failed: {e}")
                say(f"warning: {e}")
            write()
    notes.append(f"1-minute load average at the end: {load_average():.2f} (start: {report.machine.load_average:.2f})")
    print(write())
    say(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())
