"""The CLI through its entry points, in subprocesses (real models, so marked integration)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SEEDS

pytestmark = pytest.mark.integration


def _run(args: list[str], index: Path, *extra_env: tuple[str, str], corpus: bool = True
         ) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "QA_INDEX_DIR": str(index),
        "QA_CORPUS_DIR": str(SEEDS),
        "HF_HUB_OFFLINE": "1",
        "NO_COLOR": "1",
        **dict(extra_env),
    }
    if not corpus:
        del env["QA_CORPUS_DIR"]
    code = "import sys; from qa.cli import {0}; raise SystemExit({0}(sys.argv[1:]))"
    entry = "ask_main" if args[0] == "ask" else "qa_main"
    return subprocess.run(
        [sys.executable, "-c", code.format(entry), *args[1:]], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli_index")
    r = _run(["qa", "index", "build", str(SEEDS)], d)
    assert r.returncode == 0, r.stderr
    assert "indexed 5 articles" in r.stdout
    return d


def test_ask_json_schema_and_offsets(index_dir: Path) -> None:
    r = _run(["ask", "--json", "--reader", "span", "Who is Russia's lead negotiator?"], index_dir)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)  # exactly one JSON object
    assert set(out) == {"question", "answer", "score", "citations", "retrieved", "best_candidate", "min_confidence",
                        "latency_ms", "n_best", "passages"}
    assert out["best_candidate"] is None and out["min_confidence"] == 0.5  # the span reader is uncalibrated
    assert isinstance(out["score"], float) and isinstance(out["latency_ms"], float)
    assert out["answer"] and out["citations"][0]["text"] == out["answer"]
    for c in out["citations"]:
        assert set(c) == {"doc_id", "start", "end", "text", "context", "context_start", "context_end", "title", "date",
                          "source", "url"}
        assert (SEEDS / f"{c['doc_id']}.txt").read_text(encoding="utf-8")[c["start"] : c["end"]] == c["text"]
    assert out["retrieved"] and len(out["retrieved"]) == len(set(out["retrieved"]))


def test_ask_human_output_marks_the_answer(index_dir: Path) -> None:
    r = _run(["ask", "--reader", "span", "Who is Russia's lead negotiator?"], index_dir)
    assert r.returncode == 0
    assert "confidence" in r.stdout and ">>" in r.stdout and "<<" in r.stdout


def test_min_confidence_withholds_and_shows_the_best_candidate(index_dir: Path) -> None:
    q = "Who is Russia's lead negotiator?"
    r = _run(["ask", "--json", "--reader", "span", "--min-confidence", "1", q], index_dir)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["answer"] is None and out["citations"] == [] and out["min_confidence"] == 1.0
    cand = out["best_candidate"]
    assert cand["score"] == out["score"] < 1.0
    assert (SEEDS / f"{cand['doc_id']}.txt").read_text(encoding="utf-8")[cand["start"] : cand["end"]] == cand["text"]
    human = _run(["ask", "--reader", "span", "--min-confidence", "1", q], index_dir)
    assert "Not in the articles" in human.stdout and repr(cand["text"]) in human.stdout
    assert "< 1.00 required" in human.stdout
    bad = _run(["ask", "--min-confidence", "1.5", q], index_dir)
    assert bad.returncode == 2 and "between 0 and 1" in bad.stderr


@pytest.mark.parametrize("question", ["", "   ", "x" * 501])
def test_bad_questions_exit_2_with_one_line(index_dir: Path, question: str) -> None:
    r = _run(["ask", question], index_dir)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error:")
    assert "Traceback" not in r.stderr


def test_missing_corpus_exits_1_with_one_line(tmp_path: Path) -> None:
    r = _run(["ask", "--corpus", str(tmp_path / "nope"), "Who?"], tmp_path / "idx")
    assert r.returncode == 1
    assert "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_bad_setting_is_named(index_dir: Path) -> None:
    r = _run(["ask", "Who?"], index_dir, ("QA_TOP_K", "0"))
    assert r.returncode == 2 and "top_k" in r.stderr and "Traceback" not in r.stderr


def test_search_and_status(index_dir: Path) -> None:
    r = _run(["qa", "search", "prisoner exchange", "-k", "3"], index_dir)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("rrf") == 3
    r = _run(["qa", "index", "status"], index_dir)
    assert r.returncode == 0 and "up to date" in r.stdout


def test_train_reader_help_and_usage_errors(tmp_path: Path) -> None:
    r = _run(["qa", "train-reader", "--help"], tmp_path)
    assert r.returncode == 0 and "usage: qa train-reader" in r.stdout and "--data" in r.stdout
    r = _run(["qa", "train-reader"], tmp_path)
    assert r.returncode == 2 and "--data" in r.stderr and "Traceback" not in r.stderr


def test_ask_never_dispatches_to_training(capsys: pytest.CaptureFixture[str]) -> None:
    from qa.cli import ask_main

    with pytest.raises(SystemExit) as exit_info:
        ask_main(["train-reader", "--help"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("usage: ask")


@pytest.mark.parametrize(("env", "want"), [(None, True), ("false", False), ("true", True)])
def test_ask_starts_fast_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch, env: str | None, want: bool) -> None:
    """`ask` answers one question per process: it asks for the runtime that starts fastest."""
    import qa.cli

    seen = []

    def fake_load(settings, corpus):  # type: ignore[no-untyped-def]
        seen.append(settings.fast_start)
        raise KeyboardInterrupt

    monkeypatch.setattr(qa.cli, "_load_pipeline", fake_load)
    if env is None:
        monkeypatch.delenv("QA_FAST_START", raising=False)
    else:
        monkeypatch.setenv("QA_FAST_START", env)
    qa.cli.ask_main(["Who leads?"])
    assert seen == [want]


def test_a_plain_ask_uses_the_folder_the_index_was_built_from(tmp_path: Path) -> None:
    mine = tmp_path / "my-articles"
    mine.mkdir()
    (mine / "harbour.txt").write_text("Harbour news\nThe new harbour crane in Gdynia was delivered by ship on "
                                      "4 March 2025.\n", encoding="utf-8")
    (mine / "tram.txt").write_text("Tram news\nThe tram line in Poznan reopened on 9 April 2025.\n", encoding="utf-8")
    idx = tmp_path / "idx"
    r = _run(["qa", "index", "build", str(mine)], idx, corpus=False)
    assert r.returncode == 0, r.stderr
    version = (idx / "CURRENT").read_text()

    r = _run(["ask", "--json", "--reader", "span", "When was the harbour crane delivered?"], idx, corpus=False)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["citations"] and {c["doc_id"] for c in out["citations"]} <= {"harbour", "tram"}
    assert "rebuild" not in r.stderr and (idx / "CURRENT").read_text() == version  # the user's index is kept

    r = _run(["qa", "index", "status"], idx, corpus=False)
    assert r.returncode == 0 and f"built from {mine.resolve()}" in r.stdout and "up to date" in r.stdout

    r = _run(["ask", "--reader", "span", "--corpus", str(SEEDS), "Who is Russia's lead negotiator?"], idx,
             corpus=False)
    assert r.returncode == 0, r.stderr
    assert f"was built from {mine.resolve()}/, not {SEEDS}/" in r.stderr and "rebuilding it from" in r.stderr


def test_ask_answers_from_a_saved_page_a_pdf_and_a_jsonl_archive_with_their_metadata(tmp_path: Path) -> None:
    news = Path(__file__).resolve().parents[1] / "examples" / "news"
    cases = [
        ("Where was the new Gdynia crane built?", "Rostock", "gdynia-crane",
         ("Gdynia harbour gets a new crane", "2025-03-04", "Baltic Times", "https://baltic.example/crane")),
        ("How much did Poznan spend on the new tram tracks?", "410 million", "poznan-tram",
         ("Rail report", "2025-04-09", None, None)),
        ("How many publishers came to the Lviv book fair?", "300", "ukraine-cities/lviv-2",
         ("Lviv opens a book fair", "2025-09-12", "Lviv Herald", None)),
    ]
    for question, answer, doc_id, meta in cases:
        r = _run(["ask", "--json", "--corpus", str(news), question], tmp_path / "idx", corpus=False)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["answer"] is not None and answer in out["answer"], (question, out)
        c = out["citations"][0]
        assert c["doc_id"] == doc_id and (c["title"], c["date"], c["source"], c["url"]) == meta, c


def test_internal_value_errors_are_exit_3_and_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from qa.cli import EXIT_INTERNAL, EXIT_USAGE, _run
    from qa.errors import UsageError

    def broken() -> int:
        raise ValueError("an index arithmetic slip")

    def misused() -> int:
        raise UsageError("--sizes must be comma-separated integers")

    assert _run(broken) == EXIT_INTERNAL and "internal error: ValueError" in capsys.readouterr().err
    assert _run(misused) == EXIT_USAGE and capsys.readouterr().err.strip() == (
        "error: --sizes must be comma-separated integers")


def test_qa_ask_is_ask_and_k_is_checked(index_dir: Path) -> None:
    r = _run(["qa", "ask", "--json", "--reader", "span", "Who is Russia's lead negotiator?"], index_dir)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["answer"]
    r = _run(["qa", "search", "-k", "0", "negotiator"], index_dir)
    assert r.returncode == 2 and "at least 1" in r.stderr
    r = _run(["qa", "search", "--json", "negotiator"], index_dir)
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 3  # QA_TOP_K's default, as for ask


def test_index_commands_take_corpus_as_an_option_too(index_dir: Path) -> None:
    r = _run(["qa", "index", "status", "--corpus", str(SEEDS)], index_dir)
    assert r.returncode == 0 and "up to date" in r.stdout, r.stdout + r.stderr
    r = _run(["qa", "index", "status", str(SEEDS), "--corpus", "/elsewhere"], index_dir)
    assert r.returncode == 2 and "two corpus folders" in r.stderr


def test_index_build_if_empty_keeps_a_built_index_and_fills_a_missing_one(index_dir: Path, tmp_path: Path) -> None:
    version = (index_dir / "CURRENT").read_text()
    r = _run(["qa", "index", "build", str(SEEDS), "--if-empty"], index_dir)
    assert r.returncode == 0, r.stderr
    assert "already holds an index (5 articles" in r.stdout
    assert (index_dir / "CURRENT").read_text() == version  # nothing rebuilt
    empty = tmp_path / "idx"
    r = _run(["qa", "index", "build", str(SEEDS), "--if-empty"], empty)
    assert r.returncode == 0, r.stderr
    assert "indexed 5 articles" in r.stdout and (empty / "CURRENT").is_file()


def test_output_into_a_closed_pipe_stops_quietly(index_dir: Path) -> None:
    """`ask ... | head -1`: the reader of the output goes away; no "internal error", no traceback."""
    code = "import sys; from qa.cli import ask_main; raise SystemExit(ask_main(sys.argv[1:]))"
    env = {**os.environ, "QA_INDEX_DIR": str(index_dir), "QA_CORPUS_DIR": str(SEEDS), "HF_HUB_OFFLINE": "1",
           "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code, "--reader", "span", "Who is Russia's lead negotiator?"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # nobody reads: the first write gets EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(300) == 141, err
    assert "internal error" not in err and "Traceback" not in err, err
