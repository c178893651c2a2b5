"""``qa bench --quick`` end to end with a fake embedder and a tiny random reader, so it cannot rot."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from qa import bench
from qa.cli import qa_main
from qa.read.transformers_reader import TransformersReader
from qa.settings import Settings
from tests.conftest import make_tiny_qa_model

from .conftest import SEEDS, FakeEmbedder

ROOT = Path(__file__).resolve().parents[1]
TESTSET = ROOT / "tests" / "data" / "qa_testset.jsonl"


@pytest.fixture(scope="module")
def tiny_reader_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide random BertForQuestionAnswering with the MiniLM tokenizer."""
    return make_tiny_qa_model(tmp_path_factory.mktemp("tiny_reader"), fp16=False)


def quick_args(out: Path, **overrides: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    argv = ["--quick", "--out", str(out), "--testset", str(TESTSET), "--corpus", str(SEEDS), "--cold-runs", "0"]
    args = parser.parse_args(argv)
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def positive(value: object) -> bool:
    return isinstance(value, (int, float)) and value > 0


def test_quick_bench_writes_every_figure(tmp_path: Path, tiny_reader_dir: Path) -> None:
    settings = Settings(reader="transformers", reader_model=str(tiny_reader_dir), corpus_dir=SEEDS,
                        index_dir=tmp_path / "unused-index")
    reader = TransformersReader(settings)
    messages: list[str] = []
    out = tmp_path / "bench" / "results.json"

    assert bench.run(quick_args(out), settings, messages.append, embedder=FakeEmbedder(), reader=reader) == 0

    report = json.loads(out.read_text())
    assert set(report) >= {"machine", "seeds", "builds", "scale", "reader", "targets", "notes"}
    machine = report["machine"]
    assert machine["cores"] >= 1 and machine["ram_gib"] > 0 and machine["cpu"] and machine["date"]
    assert machine["git_commit"]

    seeds = report["seeds"]
    for stage in ("total", "embed", "retrieve", "read"):
        assert positive(seeds[stage]["p50_ms"]) and seeds[stage]["p99_ms"] >= seeds[stage]["p50_ms"]
    assert positive(seeds["batched_questions_per_s"]) and positive(seeds["sequential_questions_per_s"])
    assert seeds["questions"] == bench.QUICK_QUESTIONS and seeds["cold_start"] is None

    assert [b["chunks"] for b in report["builds"]][1] == bench.QUICK_EMBED_SAMPLE_CHUNKS
    assert all(positive(b["chunks_per_s"]) and positive(b["peak_rss_mib"]) for b in report["builds"])

    (scale,) = report["scale"]
    assert scale["chunks"] == bench.QUICK_SIZES[0] and scale["auto_kind"] == "flat"
    kinds = {d["kind"] for d in scale["dense"]}
    assert kinds == {"flat", "hnsw", "ivf"}
    for d in scale["dense"]:
        assert positive(d["dense_p50_ms"]) and 0.0 < d["recall_at_10"] <= 1.0
    flat = next(d for d in scale["dense"] if d["kind"] == "flat")
    assert flat["recall_at_10"] == 1.0 and positive(flat["hybrid_p50_ms"])
    assert positive(scale["bm25_p50_ms"]) and positive(scale["index_chunks_per_s"]) and positive(scale["peak_rss_mib"])
    assert positive(scale["write_p50_ms"]) and scale["write_p95_ms"] >= scale["write_p50_ms"]
    assert scale["bytes_measured"] and positive(scale["bytes_per_chunk"]["vectors"])
    assert positive(scale["bytes_per_chunk"]["index_total"])

    rd = report["reader"]
    for key in ("ours_ms_per_question", "pipeline_ms_per_question", "forward_ms_per_question",
                "ratio_vs_pipeline", "ratio_vs_forward"):
        assert positive(rd[key]), key
    assert rd["profile_top"]
    assert {t["name"].split(" (")[0] for t in report["targets"]} >= {
        "reader time / HF QA pipeline", "warm ask p50 on the seed corpus", "warm ask p95 on the seed corpus"}

    md = out.with_suffix(".md").read_text()
    assert "| total |" in md and "recall@10" in md and "bare forward pass" in md


def test_cold_start_medians_the_runs() -> None:
    probe = [sys.executable, "-c", 'print(\'{"import_s": 0.1, "load_s": 0.2, "first_answer_s": 0.3}\')']
    cold = bench.measure_cold_start([sys.executable, "-c", "pass"], probe, "When?", {}, runs=2)
    assert cold.runs == 2 and cold.command_s > 0
    assert (cold.import_s, cold.load_s, cold.first_answer_s) == (0.1, 0.2, 0.3)


def test_synthetic_corpus_offsets_round_trip() -> None:
    text = bench.ZipfText(bench.zipf_vocabulary(["Istanbul talks began in May"], 200))
    articles, chunks = bench.synthetic_corpus(text, 20, seed=0)
    by_id = {a.doc_id: a for a in articles}
    assert len(chunks) == 20 and len(articles) == -(-20 // bench.CHUNKS_PER_ARTICLE)
    assert all(by_id[c.doc_id].text[c.start : c.end] == c.text for c in chunks)


def test_mixture_vectors_are_unit_and_clustered() -> None:
    x = bench.mixture_vectors(2000, 384, seed=0)
    q = bench.mixture_vectors(50, 384, seed=1)
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4)
    nearest = (q @ x.T).max(axis=1)
    # Clustered: every query has a clearly closer neighbour than random pairs (cosine ~0).
    assert nearest.mean() > 0.3 and abs(float((x[:500] @ x[500:1000].T).mean())) < 0.1


def test_bad_sizes_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert qa_main(["bench", "--sizes", "10k"]) == 2
    assert "--sizes must be comma-separated integers" in capsys.readouterr().err
