"""Part 3: our reader vs the Hugging Face QA pipeline's algorithm vs the bare forward pass."""

from __future__ import annotations

import contextlib
import cProfile
import io
import pstats
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.bench.config import Say
from qa.bench.results import ReaderResult
from qa.ort import onnx_available
from qa.read import Reader
from qa.read.transformers_reader import resolve_precision
from qa.settings import Settings
from qa.types import Hit


def tokenize_like_reader(tokenizer: Any, settings: Settings, question: str, hits: Sequence[Hit]) -> dict[str, Any]:
    """The windows our reader builds for one question (same truncation, stride and padding)."""
    enc = tokenizer([question] * len(hits), [h.chunk.text for h in hits], truncation="only_second",
                    max_length=settings.reader_max_length, stride=settings.reader_stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True, padding="longest",
                    return_tensors="pt")
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}


def hf_pipeline_baseline(model: Any, tokenizer: Any, settings: Settings) -> tuple[Callable[[str, Sequence[Hit]], Any],
                                                                                  str]:
    """What a user would write: ``pipeline("question-answering")`` over the passages, one call per
    question. transformers 5 removed that task; then its algorithm (v4.x QuestionAnsweringPipeline,
    batch_size 1: one forward per window, softmax start x end outer product per window) stands in."""
    kwargs = dict(max_seq_len=settings.reader_max_length, doc_stride=settings.reader_stride,
                  max_answer_len=settings.max_answer_tokens, handle_impossible_answer=True, top_k=1)
    try:
        import transformers

        hf_pipeline: Any = transformers.pipeline
        qa = hf_pipeline("question-answering", model=model, tokenizer=tokenizer, device=-1)

        def run_hf(question: str, hits: Sequence[Hit]) -> Any:
            return qa(question=[question] * len(hits), context=[h.chunk.text for h in hits], **kwargs)

        return run_hf, "transformers.pipeline('question-answering')"
    except (KeyError, ValueError, ImportError):
        pass
    import torch

    def run_v4(question: str, hits: Sequence[Hit]) -> Any:
        answers = []
        for h in hits:
            enc = tokenizer(question, h.chunk.text, truncation="only_second", max_length=settings.reader_max_length,
                            stride=settings.reader_stride, return_overflowing_tokens=True,
                            return_offsets_mapping=True, padding="longest")
            best: tuple[float, int, int] = (-1.0, 0, 0)
            min_null = 1.0
            for f in range(len(enc["input_ids"])):
                feats = {k: torch.tensor([enc[k][f]]) for k in ("input_ids", "attention_mask", "token_type_ids")
                         if k in enc}
                with torch.no_grad():
                    out = model(**feats)
                seq = enc.sequence_ids(f)
                undesired = np.array([s != 1 for s in seq])
                undesired[0] = False
                start = np.where(undesired, -10000.0, out.start_logits[0].numpy())
                end = np.where(undesired, -10000.0, out.end_logits[0].numpy())
                start = np.exp(start - start.max())
                start /= start.sum()
                end = np.exp(end - end.max())
                end /= end.sum()
                min_null = min(min_null, float(start[0] * end[0]))
                start[0] = end[0] = 0.0
                outer = np.matmul(start[:, None], end[None, :])
                cand = np.tril(np.triu(outer), settings.max_answer_tokens - 1)
                flat = cand.flatten()
                i = int(np.argmax(flat))
                s, e = np.unravel_index(i, cand.shape)
                if flat[i] > best[0]:
                    offs = enc["offset_mapping"][f]
                    best = (float(flat[i]), offs[s][0], offs[e][1])
            answers.append({"score": best[0], "start": best[1], "end": best[2],
                            "answer": h.chunk.text[best[1] : best[2]], "null": min_null})
        return answers

    return run_v4, "transformers 4.x QuestionAnsweringPipeline algorithm (the task is gone from transformers 5)"


def bench_reader(reader: Reader, settings: Settings, questions: Sequence[str], hits: Sequence[list[Hit]],
                 repeats: int, say: Say) -> ReaderResult:
    """Our reader vs the HF QA pipeline vs the bare forward pass, interleaved in each repeat.

    The bare forward pass runs in the reader's own runtime and precision (ONNX Runtime fp32, or torch
    in QA_READER_PRECISION); torch's forward pass in fp32, under bfloat16 autocast and with int8
    dynamic quantisation of the Linear layers, and ONNX Runtime's, are timed beside it, with how
    often the best start/end token of the bf16 and int8 ones agrees with fp32.
    """
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(settings.reader_model)
    model = AutoModelForQuestionAnswering.from_pretrained(settings.reader_model).float().eval()
    baseline, impl = hf_pipeline_baseline(model, tokenizer, settings)
    pairs = [(q, h) for q, h in zip(questions, hits, strict=True) if h]
    windows = [tokenize_like_reader(tokenizer, settings, q, h) for q, h in pairs]
    n_windows = sum(int(w["input_ids"].shape[0]) for w in windows)
    int8 = _int8_model(model)
    session: Any = getattr(reader, "_session", None)  # the reader's ONNX Runtime session, if it runs on one
    if session is None and onnx_available() and Path(settings.reader_model).is_dir():
        from qa.ort import cache_dir, onnx_model, open_session

        session = open_session(onnx_model(Path(settings.reader_model), "qa", cache_dir(settings.onnx_cache_dir)))
    onnx_windows = ([{i.name: w[i.name].numpy() for i in session.get_inputs()} for w in windows]
                    if session is not None else [])

    def forward_onnx() -> None:
        for w in onnx_windows:
            session.run(None, w)

    def forward_with(m: Any, bf16: bool = False) -> Callable[[], None]:
        def run_all() -> None:
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with torch.inference_mode(), ctx:
                for w in windows:
                    m(**w)

        return run_all

    def ours() -> None:
        for q, h in pairs:
            reader.read_batch([q], [h])

    def pipe() -> None:
        for q, h in pairs:
            baseline(q, h)

    def tokenize() -> None:
        for q, h in pairs:
            tokenize_like_reader(tokenizer, settings, q, h)

    # The floor is the forward pass in the reader's own runtime and arithmetic.
    on_onnx = getattr(reader, "_session", None) is not None
    precision = str(getattr(reader, "precision", "onnx fp32")) if on_onnx else resolve_precision(
        settings.reader_precision)
    floor = forward_onnx if on_onnx else forward_with(model, bf16=precision == "bf16")
    timed: dict[str, Callable[[], None]] = {"ours": ours, "pipe": pipe, "fwd": floor,
                                            "tok": tokenize, "fp32": forward_with(model),
                                            "bf16": forward_with(model, bf16=True)}
    if int8 is not None:
        timed["int8"] = forward_with(int8)
    if session is not None:
        timed["onnx"] = forward_onnx
    for warm_up in timed.values():
        warm_up()
    times: dict[str, list[float]] = {name: [] for name in timed}
    r_pipe, r_fwd = [], []
    for r in range(repeats):
        for name, fn in timed.items():
            t = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t) * 1000.0 / len(pairs))
        r_pipe.append(times["ours"][-1] / times["pipe"][-1])
        r_fwd.append(times["ours"][-1] / times["fwd"][-1])
        say(f"  reader repeat {r + 1}/{repeats}: ours {times['ours'][-1]:.1f} ms/q, pipeline "
            f"{times['pipe'][-1]:.1f}, forward {times['fwd'][-1]:.1f}, bf16 {times['bf16'][-1]:.1f}")
    med = {name: float(np.median(v)) for name, v in times.items()}
    other = [o - f - k for o, f, k in zip(times["ours"], times["fwd"], times["tok"], strict=True)]
    return ReaderResult(
        model=settings.reader_model, questions=len(pairs), passages=sum(len(h) for _, h in pairs),
        windows=n_windows, repeats=repeats, ours_ms_per_question=med["ours"],
        pipeline_ms_per_question=med["pipe"], pipeline_impl=impl, forward_ms_per_question=med["fwd"],
        tokenize_ms_per_question=med["tok"], other_ms_per_question=float(np.median(other)),
        ratio_vs_pipeline=float(np.median(r_pipe)), ratio_vs_forward=float(np.median(r_fwd)),
        precision=precision, forward_fp32_ms_per_question=med["fp32"],
        forward_bf16_ms_per_question=med["bf16"], forward_int8_ms_per_question=med.get("int8"),
        forward_onnx_ms_per_question=med.get("onnx"),
        bf16_argmax_agreement=_argmax_agreement(model, model, windows, bf16=True),
        int8_argmax_agreement=_argmax_agreement(model, int8, windows) if int8 is not None else None,
        profile_top=profile_top(ours),
    )


def _int8_model(model: Any) -> Any:
    """``model`` with int8 dynamic quantisation of its Linear layers, or None where unsupported."""
    import copy

    import torch

    try:
        with warnings.catch_warnings():  # deprecated in favour of torchao, which is not a dependency
            warnings.simplefilter("ignore")
            from torch.ao.quantization import quantize_dynamic

            return quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    except (ImportError, RuntimeError, AssertionError):
        return None


def _argmax_agreement(ref: Any, other: Any, windows: Sequence[dict[str, Any]], bf16: bool = False) -> float:
    """Share of windows where ``other`` picks the same best start and end token as ``ref`` (fp32)."""
    import torch

    same = total = 0
    with torch.inference_mode():
        for w in windows:
            a = ref(**w)
            with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                b = other(**w)
            mask = w["attention_mask"].bool()
            for logits_a, logits_b in ((a.start_logits, b.start_logits), (a.end_logits, b.end_logits)):
                ia = logits_a.float().masked_fill(~mask, -1e9).argmax(dim=1)
                ib = logits_b.float().masked_fill(~mask, -1e9).argmax(dim=1)
                same += int((ia == ib).sum())
                total += int(ia.numel())
    return same / max(total, 1)


def profile_top(fn: Callable[[], object], n: int = 12) -> list[str]:
    """The ``n`` functions with the most own time under cProfile, as one line each."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof, stream=io.StringIO())
    total = max(stats.total_tt, 1e-9)  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:n]  # type: ignore[attr-defined]
    out = []
    for (file, line, func), (_, ncalls, tottime, cumtime, _) in rows:
        where = f"{Path(file).name}:{line}" if line else file
        out.append(f"{100 * tottime / total:5.1f}% own {tottime * 1000:8.1f} ms, cum {cumtime * 1000:8.1f} ms, "
                   f"{ncalls:>7} calls  {func} ({where})")
    return out
