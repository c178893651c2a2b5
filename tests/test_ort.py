"""ONNX Runtime backend: the same spans and vectors as torch, exports cached, spaCy without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qa import ort
from qa.embed import OnnxEmbedder, SentenceTransformerEmbedder, make_embedder, mean_pooling_folder
from qa.errors import ModelUnavailable
from qa.read.transformers_reader import TransformersReader
from qa.settings import Settings
from qa.types import Chunk, Hit
from tests.conftest import make_tiny_qa_model

NON_ASCII = "Le café “Zoë” 😀 ouvrit en 1998.\r\nIl fermait à Paris, dit-on. Naïve façade! "


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_qa_model(tmp_path_factory.mktemp("tiny_onnx"), fp16=True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx_cache")


def _reader(model: Path, backend: str, cache: Path, **kw: object) -> TransformersReader:
    s = Settings(reader_model=str(model), backend=backend, onnx_cache_dir=cache, reader_precision="fp32",
                 reader_type_weight=0.0, **kw)  # type: ignore[arg-type]
    r = TransformersReader(s)
    r.load()
    return r


def test_onnx_reader_reads_the_spans_torch_reads(tiny_dir: Path, cache: Path) -> None:
    body = " ".join(f"Sentence {i}: {NON_ASCII}" for i in range(12))
    article = "Head.\r\n" + body
    hits = [Hit(Chunk("a", 7, 7 + len(body), body), 1.0), Hit(Chunk("b", 0, 24, "A short second passage."), 0.5)]
    torch_r = _reader(tiny_dir, "torch", cache, reader_max_length=64, reader_stride=16)
    onnx_r = _reader(tiny_dir, "onnx", cache, reader_max_length=64, reader_stride=16)
    assert onnx_r._session is not None and onnx_r._model is None
    want = torch_r.score_batch(["Who fermait à Paris?"], [hits])[0]
    got = onnx_r.score_batch(["Who fermait à Paris?"], [hits])[0]
    assert got.min_null == pytest.approx(want.min_null, abs=1e-4)
    # A random model's logits are close together: compare the best spans and every logit.
    assert [(c.doc_id, c.start, c.end) for c in got.candidates[:5]] == [
        (c.doc_id, c.start, c.end) for c in want.candidates[:5]]
    by_key = {(c.doc_id, c.start, c.end): c.logit for c in want.candidates}
    for c in got.candidates:
        if (c.doc_id, c.start, c.end) in by_key:
            assert c.logit == pytest.approx(by_key[(c.doc_id, c.start, c.end)], abs=1e-4)
        source = article[c.start:c.end] if c.doc_id == "a" else "A short second passage."[c.start:c.end]
        assert c.text == source


def test_export_is_cached_and_redone_when_the_model_changes(tiny_dir: Path, tmp_path: Path) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_dir, model)
    calls: list[str] = []
    first = ort.onnx_model(model, "qa", tmp_path / "c", calls.append)
    again = ort.onnx_model(model, "qa", tmp_path / "c", calls.append)
    assert first == again and len(calls) == 1 and "exporting" in calls[0]
    (model / "config.json").write_text((model / "config.json").read_text() + "\n")  # a retrained model
    third = ort.onnx_model(model, "qa", tmp_path / "c", calls.append)
    assert third != first and third.is_file() and len(calls) == 2
    assert not first.exists()  # the old export of the same folder is pruned
    assert not list((tmp_path / "c").rglob(".model.*"))  # no temporary file left behind


def test_exports_of_folders_that_are_gone_are_pruned(tiny_dir: Path, tmp_path: Path) -> None:
    import shutil

    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(tiny_dir, old)
    shutil.copytree(tiny_dir, new)
    stale = ort.onnx_model(old, "qa", tmp_path / "c")
    (tmp_path / "c" / "not-ours").mkdir()  # no source.json: left alone
    shutil.rmtree(old)  # e.g. a deleted clone or virtualenv
    kept = ort.onnx_model(new, "qa", tmp_path / "c")
    assert kept.is_file() and not stale.exists() and (tmp_path / "c" / "not-ours").is_dir()


def test_onnx_backend_needs_a_local_folder(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(ModelUnavailable, match=r"tokenizer\.json"):
        TransformersReader(Settings(reader_model=str(tmp_path / "m"), backend="onnx")).load()
    with pytest.raises(ModelUnavailable, match=r"no config\.json"):
        ort.onnx_model(tmp_path, "qa", tmp_path / "c")


def test_onnx_embedder_gives_sentence_transformers_vectors(cache: Path) -> None:
    texts = ["When was the second Istanbul round?", "x", NON_ASCII * 30, "Delegations met in Istanbul on Monday."]
    onnx_e = OnnxEmbedder(cache_dir=cache)
    onnx_e.load()
    st = SentenceTransformerEmbedder()
    st.load()
    assert np.abs(onnx_e.embed_batch(texts) - st.embed_batch(texts)).max() < 1e-4
    assert (onnx_e.dim, onnx_e.max_tokens) == (st.dim, st.max_tokens)
    assert onnx_e.count_tokens(texts) == st.count_tokens(texts)  # counted untruncated, like the chunker needs
    assert onnx_e.embed_batch([]).shape == (0, st.dim)


def test_make_embedder_follows_the_backend_setting(tmp_path: Path) -> None:
    assert isinstance(make_embedder(Settings(backend="onnx")), OnnxEmbedder)
    assert isinstance(make_embedder(Settings(backend="torch")), SentenceTransformerEmbedder)
    assert isinstance(make_embedder(Settings(backend="auto")), OnnxEmbedder)
    # A folder that is not Transformer -> mean Pooling -> Normalize stays on sentence-transformers.
    assert mean_pooling_folder(tmp_path) is None
    assert isinstance(make_embedder(Settings(backend="auto", embed_model=str(tmp_path))), SentenceTransformerEmbedder)


def test_spacy_imports_without_torch() -> None:
    code = ("import sys; from qa.ort import import_spacy; import_spacy(); assert 'torch' not in sys.modules; "
            "import torch; print(torch.tensor([1]).item())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"  # torch still imports afterwards


def test_auto_backend_puts_the_reader_where_it_is_fastest(
    tiny_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qa.read.transformers_reader as tr

    def reader(**kw: object) -> TransformersReader:
        kw.setdefault("backend", "auto")
        r = TransformersReader(Settings(reader_model=str(tiny_dir), onnx_cache_dir=cache, reader_type_weight=0.0,
                                        **kw))  # type: ignore[arg-type]
        r.load()
        return r

    monkeypatch.setattr(tr, "cpu_has_native_bf16", lambda: True)
    assert reader()._model is not None  # torch bf16 beats ONNX Runtime fp32 there
    assert reader(fast_start=True)._session is not None  # but starting without torch comes first
    int8 = reader(reader_precision="int8")
    assert int8._session is not None and int8.precision == "onnx int8"
    monkeypatch.setattr(tr, "cpu_has_native_bf16", lambda: False)
    assert reader()._session is not None
    with pytest.raises(ModelUnavailable, match="int8 runs on ONNX Runtime"):
        reader(reader_precision="int8", backend="torch")
