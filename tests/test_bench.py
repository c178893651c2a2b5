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
from qa.ort import cpu_has_native_bf16
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
    # What decides the reader's runtime is recorded, so figures from different CPUs can be told apart.
    assert machine["native_bf16"] is cpu_has_native_bf16()
    assert machine["simd"] in ("avx512f", "avx2", "avx", "sse4_2", "")

    seeds = report["seeds"]
    assert seeds["reader"] == f"transformers ({reader.precision})"
    assert f"reader transformers ({reader.precision})" in (out.parent / "results.md").read_text()
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
    (local,) = scale["stores"]  # --quick compares the local store only
    assert local["store"] == "local" and positive(local["retrieve_p50_ms"]) and positive(local["write_p50_ms"])

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


def tiny_scale_settings(tmp_path: Path) -> Settings:
    return Settings(corpus_dir=SEEDS, index_dir=tmp_path / "unused-index")


def test_scale_fills_each_store_and_reports_them_side_by_side(tmp_path: Path) -> None:
    """200 chunks in the local store, Milvus Lite in a file and a `milvus-lite server`: every
    store's retrieval and write latencies are measured numbers, through the store protocol."""
    pytest.importorskip("pymilvus")
    messages: list[str] = []
    result = bench.scale_one(200, tiny_scale_settings(tmp_path), ann=(), n_queries=6, save_max=10_000,
                             embed_chunks_per_s=None, say=messages.append,
                             stores=("local", "milvus-lite", "milvus-server"))

    assert [r.store for r in result.stores] == ["local", "milvus-lite", "milvus-server"]
    for run in result.stores:
        assert run.chunks == 200 and run.queries == 6 and run.writes == bench.WRITE_SAMPLES, run.store
        for figure in ("fill_s", "fill_chunks_per_s", "retrieve_p50_ms", "write_p50_ms", "disk_bytes_per_chunk"):
            assert positive(getattr(run, figure)), (run.store, figure)
        assert run.retrieve_p95_ms >= run.retrieve_p50_ms and run.write_p95_ms >= run.write_p50_ms, run.store
    local, lite, server = result.stores
    # The local column is the scale part's own fused retrieval on the auto (flat) index.
    flat = next(d for d in result.dense if d.kind == "flat")
    assert local.retrieve_p50_ms == flat.hybrid_p50_ms and local.write_p50_ms == result.write_p50_ms
    # The server's memory is its own process's peak: always positive. Embedded Milvus Lite's is this
    # process's RSS growth during the fill, which `qa bench` measures in a fresh process; late in a
    # long test process 200 chunks can land in memory that earlier tests freed (seen: -0.07 MiB), so
    # here it must only be measured and small.
    assert local.memory_mib is None and positive(server.memory_mib)
    assert lite.memory_mib is not None and abs(lite.memory_mib) < 512
    assert positive(lite.first_retrieve_ms) and positive(server.first_retrieve_ms)
    assert any("milvus-server filled" in m for m in messages)

    report = bench.BenchReport(machine=bench.machine_info(), quick=True, settings={}, seeds=None, builds=[],
                               embed_chunks_per_s=None, scale=[result], reader=None, targets=[], notes=[])
    md = bench.format_markdown(report)
    assert "| chunks | figure | local | milvus-lite | milvus-server |" in md
    row = next(line for line in md.splitlines() if line.startswith("| 200 | retrieval p50 ms |"))
    cells = [c.strip() for c in row.strip("|").split("|")][2:]
    assert len(cells) == 3 and all(float(c.replace(",", "")) > 0 for c in cells)
    stores = report.to_dict()["scale"][0]["stores"]  # type: ignore[index]
    assert [s["store"] for s in stores] == ["local", "milvus-lite", "milvus-server"]


def test_fill_milvus_stores_the_corpus_as_given(tmp_path: Path) -> None:
    """The bench's bulk fill goes through the store's own schema and insert path: every chunk is
    there, an article reads back exactly, and a chunk's own vector and words find it first."""
    pytest.importorskip("pymilvus")
    from qa.index import Manifest
    from qa.store.milvus import MilvusStore

    text = bench.ZipfText(bench.zipf_vocabulary(["Istanbul talks began in May"], 300))
    articles, chunks = bench.synthetic_corpus(text, 40, seed=0)
    vectors = bench.mixture_vectors(40, 16, seed=0)
    store = MilvusStore(Settings(store="milvus", milvus_uri=str(tmp_path / "m.db"), milvus_collection="fill"))
    manifest = Manifest(embed_model="synthetic", dim=16, chunk_tokens=160, chunk_overlap_tokens=32,
                        index_type="flat", fingerprints={}, n_chunks=40)
    try:
        view = bench.fill_milvus(store, manifest, articles, chunks, vectors)
        assert store.count_chunks() == 40 and store.count_articles() == len(articles)
        assert store.manifest().dim == 16 and store.manifest().index_type == "milvus"
        assert view.articles[articles[2].doc_id].text == articles[2].text
        c = chunks[13]
        (hits,) = store.retriever(view, FakeEmbedder()).retrieve_batch([c.text[:80]], 3, vectors[13][None, :])
        assert (hits[0].chunk.doc_id, hits[0].chunk.start, hits[0].chunk.end) == (c.doc_id, c.start, c.end)
    finally:
        store.close()


def test_milvus_stores_are_skipped_with_a_reason_without_pymilvus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymilvus", None)  # import pymilvus now raises ImportError
    from qa.bench.cli import available_stores

    assert bench.milvus_missing() == "pymilvus is not installed (pip install -e '.[milvus]')"
    stores, notes = available_stores(("local", "milvus-lite", "milvus-server"))
    assert stores == ("local",)
    assert notes == ["Milvus stores skipped (milvus-lite, milvus-server): pymilvus is not installed "
                     "(pip install -e '.[milvus]')"]


def test_stores_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = bench.plan_from_args(quick_args(tmp_path / "r.json", stores="milvus-lite, local"))
    assert plan.stores == ("milvus-lite", "local")
    assert bench.plan_from_args(quick_args(tmp_path / "r.json")).stores == ("local",)  # --quick
    assert bench.plan_from_args(quick_args(tmp_path / "r.json", quick=False)).stores == ("local", "milvus-lite")
    assert qa_main(["bench", "--stores", "local,milvus"]) == 2
    assert "--stores takes local, milvus-lite, milvus-server; got 'local,milvus'" in capsys.readouterr().err
