"""Targets check and the markdown tables of a ``BenchReport``."""

from __future__ import annotations

from qa.bench.config import (
    TARGET_COLD_START_S,
    TARGET_READER_VS_FORWARD,
    TARGET_READER_VS_PIPELINE,
    TARGET_RECALL,
    TARGET_RETRIEVE_MS,
    TARGET_WARM_P50_MS,
    TARGET_WARM_P95_MS,
)
from qa.bench.results import BenchReport, Latency, TargetCheck


def check_targets(report: BenchReport) -> list[TargetCheck]:
    """Each target of the issue with the measured value and whether it is met."""
    checks: list[TargetCheck] = []
    if report.seeds is not None:
        total = report.seeds.total
        checks.append(TargetCheck("warm ask p50 on the seed corpus", total.p50_ms, f"< {TARGET_WARM_P50_MS} ms",
                                  total.p50_ms < TARGET_WARM_P50_MS))
        checks.append(TargetCheck("warm ask p95 on the seed corpus", total.p95_ms, f"< {TARGET_WARM_P95_MS} ms",
                                  total.p95_ms < TARGET_WARM_P95_MS))
        cold = report.seeds.cold_start
        if cold is not None:
            checks.append(TargetCheck("cold start: `ask --json` process to answer, index present", cold.command_s,
                                      f"< {TARGET_COLD_START_S} s", cold.command_s < TARGET_COLD_START_S))
    largest = max(report.scale, key=lambda s: s.chunks, default=None)
    if largest is not None:
        auto = next((d for d in largest.dense if d.kind == largest.auto_kind and d.hybrid_p50_ms is not None), None)
        if auto is not None:
            checks.append(TargetCheck(f"dense retrieval p50 at {largest.chunks} chunks ({auto.kind})",
                                      auto.dense_p50_ms, f"< {TARGET_RETRIEVE_MS} ms",
                                      auto.dense_p50_ms < TARGET_RETRIEVE_MS))
            if auto.hybrid_p50_ms is not None:
                checks.append(TargetCheck(f"dense+BM25 retrieval p50 at {largest.chunks} chunks ({auto.kind})",
                                          auto.hybrid_p50_ms, f"< {TARGET_RETRIEVE_MS} ms",
                                          auto.hybrid_p50_ms < TARGET_RETRIEVE_MS))
            checks.append(TargetCheck(f"recall@10 vs flat at {largest.chunks} chunks ({auto.kind})",
                                      auto.recall_at_10, f">= {TARGET_RECALL}", auto.recall_at_10 >= TARGET_RECALL))
    if report.reader is not None:
        r = report.reader
        checks.append(TargetCheck("reader time / HF QA pipeline", r.ratio_vs_pipeline,
                                  f"<= {TARGET_READER_VS_PIPELINE}", r.ratio_vs_pipeline <= TARGET_READER_VS_PIPELINE))
        checks.append(TargetCheck("reader time / bare forward pass", r.ratio_vs_forward,
                                  f"<= {TARGET_READER_VS_FORWARD}", r.ratio_vs_forward <= TARGET_READER_VS_FORWARD))
    return checks


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * x


def _f(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


_STORE_FIGURES = (
    ("retrieval p50 ms", "retrieve_p50_ms", 2), ("retrieval p95 ms", "retrieve_p95_ms", 2),
    ("first retrieval after opening ms", "first_retrieve_ms", 1),
    ("write p50 ms", "write_p50_ms", 2), ("write p95 ms", "write_p95_ms", 2),
    ("fill s", "fill_s", 1), ("fill chunks/s", "fill_chunks_per_s", 0), ("memory MiB", "memory_mib", 0),
    ("disk bytes/chunk", "disk_bytes_per_chunk", 0),
)


def _stores_table(report: BenchReport) -> list[str]:
    """Each synthetic size's figures with one column per store."""
    kinds = list(dict.fromkeys(r.store for sc in report.scale for r in sc.stores))
    if not kinds:
        return []
    lines = ["## Stores side by side (the same synthetic corpora)", "",
             "Retrieval: `Store.retriever(...).retrieve_batch` on one question with its vector given (local: "
             "`HybridRetriever` on the auto index; Milvus: `MilvusRetriever`, one `hybrid_search` with RRF plus the "
             "current-version check). Write: `Store.write` of one new article of 8 chunks with its vectors. Memory: "
             "milvus-lite, the bench process's RSS growth while filling and searching (it runs in-process); "
             "milvus-server, the server's peak RSS; local, see peak RSS above. Disk: local index + article text; "
             "Milvus, its data folder.", "",
             "| chunks | figure | " + " | ".join(kinds) + " |", "|---:|---|" + "---:|" * len(kinds)]
    for sc in report.scale:
        if not sc.stores:
            continue
        by_kind = {r.store: r for r in sc.stores}
        for label, attr, digits in _STORE_FIGURES:
            cells = [_f(getattr(by_kind[k], attr), digits) if k in by_kind else "-" for k in kinds]
            lines.append(f"| {sc.chunks:,} | {label} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def format_markdown(report: BenchReport) -> str:
    """The report as markdown tables (also printed by ``qa bench``)."""
    m = report.machine
    lines = [f"# qa bench{' (quick)' if report.quick else ''}", "",
             f"{m.cpu}, {m.cores} cores ({m.simd or 'vector extensions unknown'}, "
             f"{'native bf16' if m.native_bf16 else 'no native bf16'}), {m.ram_gib:.1f} GiB RAM; "
             f"Python {m.python}, torch {m.torch}, "
             f"faiss {m.faiss}; {m.date}; commit {m.git_commit[:12]}{' (dirty)' if m.git_dirty else ''}; "
             f"load average {m.load_average:.2f} at start", ""]
    s = report.seeds
    if s is not None:
        lines += [f"## Seed corpus ({s.articles} articles, {s.chunks} chunks), warm, reader {s.reader}", "",
                  f"{s.questions} questions x {s.repeats} repeats (medians over repeats)", "",
                  "| stage | p50 ms | p95 ms | p99 ms |", "|---|---:|---:|---:|"]
        for name in ("total", "embed", "retrieve", "read", "assemble"):
            lat: Latency = getattr(s, name)
            lines.append(f"| {name} | {_f(lat.p50_ms)} | {_f(lat.p95_ms)} | {_f(lat.p99_ms)} |")
        lines += ["", f"Sequential: {s.sequential_questions_per_s:.2f} questions/s; batched "
                      f"(ask_batch of {s.batch_size}): {s.batched_questions_per_s:.2f} questions/s."]
        if s.cold_start is not None:
            c = s.cold_start
            lines.append(f"Cold start `ask --json` (median of {c.runs}): {c.command_s:.2f} s; inside a fresh "
                         f"process: imports {c.import_s:.2f} s, models + index load {c.load_s:.2f} s, "
                         f"first answer {c.first_answer_s:.2f} s.")
        lines.append("")
    if report.builds or report.embed_chunks_per_s:
        lines += ["## Index build with the real embedder", "",
                  "| corpus | chunks | seconds | chunks/s | peak RSS MiB | RSS growth MiB |",
                  "|---|---:|---:|---:|---:|---:|"]
        for b in report.builds:
            lines.append(f"| {b.label} | {b.chunks} | {_f(b.seconds, 2)} | {_f(b.chunks_per_s)} | "
                         f"{_f(b.peak_rss_mib, 0)} | {_f(b.rss_growth_mib, 0)} |")
        lines.append("")
    if report.scale:
        lines += ["## Synthetic corpora", "", f"Synthetic: {report.scale[0].synthetic}.", "",
                  "| chunks | index | params | build s | FAISS bytes/chunk | dense p50 ms | dense p95 ms | recall@10 | "
                  "dense+BM25 p50 ms | dense+BM25 p95 ms |",
                  "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for sc in report.scale:
            for d in sc.dense:
                mark = f" ({d.role})" if d.role else ""
                lines.append(f"| {sc.chunks:,} | {d.kind}{mark} | {d.params} | {_f(d.build_s, 2)} | "
                             f"{_f(d.index_bytes_per_chunk, 0)} | "
                             f"{_f(d.dense_p50_ms, 2)} | {_f(d.dense_p95_ms, 2)} | {d.recall_at_10:.3f} | "
                             f"{_f(d.hybrid_p50_ms, 2)} | {_f(d.hybrid_p95_ms, 2)} |")
        lines += ["", "| chunks | auto index | BM25 build s | BM25 p50 ms | BM25 p95 ms | (every row scored: p50 ms) | "
                      "index build s "
                      "(BM25 + auto FAISS) | chunks/s | projected build s with real embedder | peak RSS MiB | "
                      "bytes/chunk: vectors | metadata | BM25 | index total | articles text | "
                      "write p50 ms | write p95 ms |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for sc in report.scale:
            per = sc.bytes_per_chunk
            note = "" if sc.bytes_measured else " (extrapolated)"
            lines.append(
                f"| {sc.chunks:,} | {sc.auto_kind} | {_f(sc.bm25_build_s)} | {_f(sc.bm25_p50_ms, 2)} | "
                f"{_f(sc.bm25_p95_ms, 2)} | {_f(sc.bm25_exhaustive_p50_ms, 2)} | {_f(sc.index_build_s)} | "
                f"{_f(sc.index_chunks_per_s, 0)} | "
                f"{_f(sc.projected_build_s_real_embedder, 0)} | {_f(sc.peak_rss_mib, 0)} | "
                f"{_f(per.get('vectors'), 0)}{note} | {_f(per.get('chunk_metadata'), 0)} | "
                f"{_f(per.get('bm25'), 0)} | {_f(per.get('index_total'), 0)} | {_f(per.get('articles'), 0)} | "
                f"{_f(sc.write_p50_ms, 2)} | {_f(sc.write_p95_ms, 2)} |")
        lines.append("")
    lines += _stores_table(report)
    r = report.reader
    if r is not None:
        lines += [f"## Reader ({r.questions} questions, {r.passages} passages, {r.windows} windows, "
                  f"{r.repeats} repeats)", "",
                  "| | ms/question | ratio (ours / it) |", "|---|---:|---:|",
                  f"| ours (TransformersReader.read_batch per question, {r.precision}) | "
                  f"{_f(r.ours_ms_per_question)} | 1.00 |",
                  f"| HF QA pipeline: {r.pipeline_impl} | {_f(r.pipeline_ms_per_question)} | "
                  f"{r.ratio_vs_pipeline:.2f} |",
                  f"| bare forward pass, same windows, inference_mode, {r.precision} | "
                  f"{_f(r.forward_ms_per_question)} | "
                  f"{r.ratio_vs_forward:.2f} |",
                  f"| (tokenization alone, same windows) | {_f(r.tokenize_ms_per_question)} | |",
                  f"| (ours minus forward minus tokenization) | {_f(r.other_ms_per_question)} | |",
                  f"| forward pass in fp32 (torch) | {_f(r.forward_fp32_ms_per_question)} | |",
                  f"| forward pass in fp32 (ONNX Runtime) | {_f(r.forward_onnx_ms_per_question)} | |",
                  f"| forward pass under bfloat16 autocast (best start/end token agrees with fp32 on "
                  f"{_f(_pct(r.bf16_argmax_agreement))}% of windows x 2) | {_f(r.forward_bf16_ms_per_question)} | |",
                  f"| what-if: forward pass with int8 dynamic quantisation of Linear layers (agrees on "
                  f"{_f(_pct(r.int8_argmax_agreement))}%) | {_f(r.forward_int8_ms_per_question)} | |", "",
                  "cProfile of our reader (own time):", "", "```", *r.profile_top, "```", ""]
    if report.targets:
        lines += ["## Targets", "", "| target | value | goal | met |", "|---|---:|---|---|"]
        for t in report.targets:
            met = "-" if t.met is None else ("yes" if t.met else "**no**")
            lines.append(f"| {t.name} | {_f(t.value, 3)} | {t.target} | {met} |")
        lines.append("")
    if report.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in report.notes], ""]
    return "\n".join(lines)
