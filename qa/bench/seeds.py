"""Part 1: warm ``ask`` latency and throughput on the seed corpus, and the cold start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qa.bench.config import BATCH_SIZE, Say
from qa.bench.measure import median_latency, percentiles
from qa.bench.results import ColdStart, Latency, SeedsResult
from qa.pipeline import QAPipeline
from qa.settings import Settings


def reader_label(reader: object) -> str:
    """The reader's name and, where it has one, its runtime ("transformers (onnx fp32)"): the same
    weights run twice as fast on torch bf16 where the CPU has native bf16."""
    name = str(getattr(reader, "name", type(reader).__name__))
    precision = getattr(reader, "precision", None)
    return f"{name} ({precision})" if isinstance(precision, str) and precision else name


def bench_seeds(pipeline: QAPipeline, questions: Sequence[str], repeats: int, say: Say) -> SeedsResult:
    """Per-question ``ask`` latency by stage and batched throughput over ``questions``."""
    index = pipeline.index
    if index is None:
        raise RuntimeError("pipeline not loaded; call load() first")
    for q in questions[:3]:  # warm-up: first calls allocate and fill caches
        pipeline.ask(q)
    stages = ("embed", "retrieve", "read", "assemble")
    per_repeat: dict[str, list[Latency]] = {s: [] for s in ("total", *stages)}
    seq_qps, batch_qps = [], []
    for r in range(repeats):
        pipeline.set_index(index)  # a fresh retriever: the question-vector cache starts empty
        rows: dict[str, list[float]] = {s: [] for s in ("total", *stages)}
        t0 = time.perf_counter()
        for q in questions:
            t = time.perf_counter()
            a = pipeline.ask(q)
            rows["total"].append((time.perf_counter() - t) * 1000.0)
            for s in stages:
                rows[s].append(a.timings.get(s, 0.0))
        seq_qps.append(len(questions) / (time.perf_counter() - t0))
        for s, vals in rows.items():
            per_repeat[s].append(percentiles(vals))
        pipeline.set_index(index)
        t0 = time.perf_counter()
        for i in range(0, len(questions), BATCH_SIZE):
            pipeline.ask_batch(list(questions[i : i + BATCH_SIZE]))
        batch_qps.append(len(questions) / (time.perf_counter() - t0))
        say(f"  seeds repeat {r + 1}/{repeats}: p50 {per_repeat['total'][-1].p50_ms:.1f} ms, "
            f"batched {batch_qps[-1]:.1f} q/s")
    med = {s: median_latency(v) for s, v in per_repeat.items()}
    return SeedsResult(
        articles=len(index.articles), chunks=index.n_chunks, questions=len(questions), repeats=repeats,
        reader=reader_label(pipeline.reader),
        total=med["total"], embed=med["embed"], retrieve=med["retrieve"], read=med["read"],
        assemble=med["assemble"], sequential_questions_per_s=float(np.median(seq_qps)), batch_size=BATCH_SIZE,
        batched_questions_per_s=float(np.median(batch_qps)), cold_start=None,
    )


# The probe runs in a fresh interpreter: times the imports, the model and index load, and the first answer.
_COLD_PROBE = """
import json, sys, time
t0 = time.perf_counter()
from qa.cli import _quiet_libraries
from qa.pipeline import QAPipeline
from qa.settings import Settings
_quiet_libraries()
t1 = time.perf_counter()
p = QAPipeline(Settings())
p.load(rebuild=False)
t2 = time.perf_counter()
p.ask(sys.argv[1])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_answer_s": t3 - t2}))
"""


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process use ``settings`` (paths made absolute)."""
    env = dict(os.environ)
    env.update({
        "QA_INDEX_DIR": str(Path(settings.index_dir).resolve()),
        "QA_CORPUS_DIR": str(Path(settings.corpus_dir).resolve()),
        "QA_EMBED_MODEL": settings.embed_model,
        "QA_READER": settings.reader,
        "QA_READER_MODEL": settings.reader_model,
        "QA_TOP_K": str(settings.top_k),
    })
    return env


def ask_command() -> list[str]:
    """The installed ``ask`` entry point next to this interpreter."""
    exe = Path(sys.executable).parent / "ask"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from qa.cli import ask_main; sys.exit(ask_main())"]


def measure_cold_start(command: Sequence[str], probe: Sequence[str], question: str, env: dict[str, str],
                       runs: int) -> ColdStart:
    """Median wall time of ``command --json question`` and the probe's split of one start."""
    walls, probes = [], []
    for _ in range(runs):
        t = time.perf_counter()
        done = subprocess.run([*command, "--json", question], env=env, capture_output=True, text=True,
                              timeout=600)
        walls.append(time.perf_counter() - t)
        if done.returncode != 0:
            raise RuntimeError(f"cold start: {' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")
        done = subprocess.run([*probe, question], env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"cold-start probe exited {done.returncode}: {done.stderr.strip()[-500:]}")
        probes.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return ColdStart(runs=runs, command_s=float(np.median(walls)),
                     import_s=float(np.median([p["import_s"] for p in probes])),
                     load_s=float(np.median([p["load_s"] for p in probes])),
                     first_answer_s=float(np.median([p["first_answer_s"] for p in probes])))
