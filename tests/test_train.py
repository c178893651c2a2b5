"""`qa train-reader` on a tiny random model and a tiny SQuAD file: resumes, seeds, card, selection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from qa.train import SELECTION_TOLERANCE, expected_f1, load_squad, main, split_titles
from tests.conftest import make_tiny_qa_model

CONTEXT = "The Ciragan Palace stands on the Bosphorus in Istanbul. Talks there lasted about an hour."


def _squad(path: Path) -> Path:
    data = []
    for t in range(4):
        qas = [
            {"id": f"{t}-a", "question": "Where does the palace stand?", "is_impossible": False,
             "answers": [{"text": "on the Bosphorus", "answer_start": CONTEXT.index("on the Bosphorus")}]},
            {"id": f"{t}-b", "question": "How long did the talks last?", "is_impossible": False,
             "answers": [{"text": "about an hour", "answer_start": CONTEXT.index("about an hour")}]},
            {"id": f"{t}-c", "question": "Who won the cup?", "is_impossible": True, "answers": []},
        ]
        data.append({"title": f"Title_{t}", "paragraphs": [{"context": CONTEXT, "qas": qas}]})
    path.write_text(json.dumps({"version": "v2.0", "data": data}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("train")
    return make_tiny_qa_model(d / "base"), _squad(d / "squad.json")


def _train(base: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["--data", str(data), "--out", str(out), "--base-model", str(base), "--batch-size", "2",
                 "--max-length", "48", "--stride", "16", "--val-title", "Title_3", "--checkpoint-every", "1",
                 "--threads", "1", *extra])


def test_trains_resumes_and_writes_a_card(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    base, data = tiny
    out = tmp_path / "reader"
    assert _train(base, data, out, "--max-steps", "2", "--no-eval") == 0
    assert json.loads((out / "train_info.json").read_text())["steps"] == 2
    # Pretend the run was stopped at step 2 of 3: the next run resumes there rather than starting again.
    state_path = out / "checkpoint" / "state.pt"
    state = torch.load(state_path, weights_only=False)
    assert state["step"] == 2
    state["plan"].update(total=3, requested=3)
    torch.save(state, state_path)
    assert _train(base, data, out, "--max-steps", "3") == 0
    info = json.loads((out / "train_info.json").read_text())
    assert info["steps"] == 3 and info["val_titles"] == ["Title_3"] and "Title_3" not in info["train_titles"]
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.float16"}  # noqa: SIM118 (safe_open is not iterable)
    card = (out / "README.md").read_text()
    assert "license: cc-by-sa-4.0" in card and "Rajpurkar" in card and "QA_NO_ANSWER_MARGIN" in card
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_questions"] == 3 and metrics["no_answer_prior"] is None
    assert metrics["objective_at_best"] == metrics["at_best_margin"]["f1"]


def test_selection_at_a_question_mix(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    base, data = tiny
    out = tmp_path / "reader"
    assert _train(base, data, out, "--max-steps", "1", "--no-answer-prior", "0.2") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["no_answer_prior"] == 0.2
    chosen = metrics["type_sweep"][f"{metrics['best_type_weight']:g}"][f"{metrics['best_margin']:g}"]
    assert metrics["objective_at_best"] == pytest.approx(expected_f1(chosen, 0.2))
    scored = [(float(w), float(m), expected_f1(r, 0.2))
              for w, row in metrics["type_sweep"].items() for m, r in row.items()]
    top = max(v for *_, v in scored)
    near = [(w, m) for w, m, v in scored if v >= top - SELECTION_TOLERANCE]
    assert metrics["objective_at_best"] >= top - SELECTION_TOLERANCE
    expected = max(near, key=lambda wm: (wm[0] == 0, wm[1], -wm[0]))
    assert (metrics["best_type_weight"], metrics["best_margin"]) == expected


def test_same_seed_same_weights(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    base, data = tiny
    tensors = []
    for run in ("a", "b"):
        assert _train(base, data, tmp_path / run, "--max-steps", "2", "--no-eval") == 0
        with safe_open(str(tmp_path / run / "model.safetensors"), "pt") as f:
            tensors.append(f.get_tensor("qa_outputs.weight"))
    assert bool((tensors[0] == tensors[1]).all())


def test_split_is_by_title_and_checked(tiny: tuple[Path, Path]) -> None:
    articles = load_squad([tiny[1]])
    assert [len(a.examples) for a in articles] == [3, 3, 3, 3]
    train, val = split_titles([a.title for a in articles], 0.25, seed=1)
    assert len(val) == 1 and not set(train) & set(val)
    with pytest.raises(ValueError, match="not in the data"):
        split_titles(["A"], 0.25, 1, ["B"])


def test_expected_f1_weights_the_two_kinds_of_question() -> None:
    assert expected_f1({"HasAns_f1": 0.6, "NoAns_acc": 0.4}, 0.2) == pytest.approx(0.56)
    assert expected_f1({"HasAns_f1": 0.6, "NoAns_acc": 0.4}, 0.0) == pytest.approx(0.6)


def test_reads_compressed_data(tmp_path: Path) -> None:
    import gzip
    import lzma

    plain = _squad(tmp_path / "squad.json")
    raw = plain.read_bytes()
    (tmp_path / "squad.json.xz").write_bytes(lzma.compress(raw))
    (tmp_path / "squad.json.gz").write_bytes(gzip.compress(raw))
    want = load_squad([plain])
    for name in ("squad.json.xz", "squad.json.gz"):
        got = load_squad([tmp_path / name])
        assert [a.examples for a in got] == [a.examples for a in want]
        assert got[0].sources == {"squad"}
    (tmp_path / "bad.json.xz").write_bytes(b"not xz at all")
    with pytest.raises(ValueError, match=r"bad\.json\.xz"):
        load_squad([tmp_path / "bad.json.xz"])


def test_negatives_are_other_paragraphs_without_the_answer_best_bm25_first() -> None:
    from qa.train import Article, NegativeRecipe, QAExample, build_negatives

    paras = [
        "The palace stands on the Bosphorus in Istanbul.",  # the question's own paragraph
        "The palace gardens were redesigned; the palace was rebuilt in 1989.",  # shares 'palace' (best BM25)
        "Tea is grown near the Black Sea coast.",  # shares nothing
        "Another text says the palace stands on the Bosphorus too.",  # contains the answer: never a negative
    ]
    ex = QAExample("q1", "T", 0, "Where does the palace stand?", paras[0],
                   (("on the Bosphorus", paras[0].index("on the Bosphorus")),))
    art = Article("T", [ex] + [QAExample(f"x{i}", "T", i, "Unrelated?", p, ()) for i, p in enumerate(paras[1:], 1)])
    one = build_negatives([art], NegativeRecipe(1.0, 0))
    assert [(n.context, n.answers, n.question) for n in one] == [(paras[1], (), ex.question)]
    two = build_negatives([art], NegativeRecipe(2.0, 0))
    assert [n.context for n in two] == [paras[1], paras[2]]
    assert build_negatives([art], NegativeRecipe(0.0, 0)) == []
    # A fraction is a mean: about that share of questions get one.
    many = Article("T", [QAExample(f"q{i}", "T", 0, "Where does the palace stand?", paras[0], ex.answers)
                         for i in range(400)] + art.examples[1:])
    n = len(build_negatives([many], NegativeRecipe(0.25, 1)))
    assert 60 < n < 140


def test_oversample_repeats_one_sources_titles() -> None:
    from qa.errors import UsageError
    from qa.train import Article, QAExample, oversampled, parse_oversample

    a = Article("A", [QAExample("a1", "A", 0, "Q?", "ctx", ())], {"squad-dev"})
    b = Article("B", [QAExample("b1", "B", 0, "Q?", "ctx", (("ctx", 0),))], {"qa-train"})
    factors = parse_oversample(["squad-dev=3"])
    assert factors == {"squad-dev": 3}
    extra = oversampled([a, b], factors)
    assert extra == a.examples * 2  # three copies in all, one already in the training set
    assert oversampled([a, b], {}) == []
    for bad in ("squad-dev", "squad-dev=0", "=2", "squad-dev=1.5"):
        with pytest.raises(UsageError, match="SOURCE=N"):
            parse_oversample([bad])


def test_edited_negatives_join_the_training_set_and_the_card(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    base, data = tiny
    out = tmp_path / "reader"
    assert _train(base, data, out, "--max-steps", "1", "--no-eval", "--sentence-negatives", "1",
                  "--negation-negatives", "1") == 0
    info = json.loads((out / "train_info.json").read_text())
    # Three training titles, two answerable questions each; each question's sentence can be cut, and each
    # question has an auxiliary to negate ("Where doesn't the palace stand?").
    assert info["n_edited_negatives"] == 12 and info["n_train_questions"] == 9 + 12
    assert info["stages"][-1]["edited_negatives"] == {"sentence_removed": 1.0, "entity_swap": 0.0, "negation": 1.0,
                                                      "entity_mix": 0.0, "n": 12}
    card = (out / "README.md").read_text()
    assert "Edited negatives (`qa/synthetic_negatives.py`): 12 unanswerable examples" in card
    assert "1 with its first auxiliary verb negated" in card


# What the GPU machine lacks of the service's packages (it has torch, transformers, tokenizers, safetensors,
# numpy, tqdm, httpx, onnxruntime and sentence-transformers): tools/train_reader_gpu.sh runs qa.train there.
NOT_ON_THE_GPU_MACHINE = ("pydantic", "fastapi", "starlette", "uvicorn", "faiss", "spacy", "trafilatura", "pymilvus",
                          "milvus", "dateparser", "feedparser", "pypdf")


def _site_without(tmp: Path, blocked: tuple[str, ...]) -> Path:
    """A site-packages of links to this one's entries, less the blocked packages and their metadata."""
    import sysconfig

    site, fake = Path(sysconfig.get_paths()["purelib"]), tmp / "site"
    fake.mkdir()
    for entry in site.iterdir():
        if not entry.name.lower().replace("-", "_").startswith(blocked):
            (fake / entry.name).symlink_to(entry)
    return fake


def test_trains_where_only_torch_and_transformers_are_installed(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    import subprocess
    import sys

    base, data = tiny
    out = tmp_path / "reader"
    repo = Path(__file__).resolve().parents[1]
    fake = _site_without(tmp_path, NOT_ON_THE_GPU_MACHINE)
    prelude = f"import sys; sys.path[:0] = [{str(repo)!r}, {str(fake)!r}]; "
    args = ["--data", str(data), "--out", str(out), "--base-model", str(base), "--batch-size", "2",
            "--max-length", "48", "--stride", "16", "--val-title", "Title_3", "--threads", "1", "--max-steps", "2",
            "--no-eval", "--device", "cpu", "--precision", "bf16", "--negatives", "1", "--sentence-negatives", "1",
            "--swap-negatives", "1", "--checkpoint-every", "1000"]
    # -S: no site-packages but the reduced one
    code = prelude + "from qa.train import main; raise SystemExit(main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-S", "-c", code, *args], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((out / "train_info.json").read_text())
    assert info["steps"] == 2 and info["device"] == "CPU (1 threads)" and info["precision"] == "bf16"
    assert (out / "model.safetensors").exists() and (out / "README.md").exists()
    # The reduced site really lacks them: the service's settings (pydantic) cannot be imported there.
    r = subprocess.run([sys.executable, "-S", "-c", prelude + "import qa.settings"], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode != 0 and "No module named 'pydantic" in r.stderr


def test_stop_at_ends_training_by_a_wall_clock_time(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    import time

    base, data = tiny
    out = tmp_path / "reader"
    # Already past: the schedule is cut at the first fit (after 20 steps of this run) instead of 200.
    assert _train(base, data, out, "--epochs", "100", "--max-steps", "200", "--no-eval", "--checkpoint-every", "1000",
                  "--stop-at", str(time.time() - 1)) == 0
    assert json.loads((out / "train_info.json").read_text())["steps"] == 20


def test_device_cuda_without_a_gpu_is_a_usage_error(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    from qa.errors import UsageError

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(UsageError, match="no CUDA GPU"):
        _train(*tiny, tmp_path / "reader", "--max-steps", "1", "--no-eval", "--device", "cuda")
