#!/usr/bin/env bash
# Calibrate and score a trained reader folder before it replaces qa/models/reader (issue 14):
# qa calibrate on the six validation titles (open mode), then closed and open validation, the
# hand-written test set, and the README's two questions. Reports go into the folder.
#   tools/reader_candidate.sh CANDIDATE_DIR          (LIMIT=N scores the first N questions only)
set -euo pipefail
CAND=${1:?usage: tools/reader_candidate.sh CANDIDATE_DIR}
S=${SHARED:-../shared}
BIN=.venv/bin
VAL=train_run/squad-val.json
LIM=()
[ -n "${LIMIT:-}" ] && LIM=(--limit "$LIMIT")
mkdir -p train_run
[ -f "$VAL" ] || $BIN/python -c "import json, sys; d = json.load(open('$S/squad/squad-dev-subset-v2.0.json')); v = set(json.load(open('qa/models/reader/split.json'))['val_titles']); d['data'] = [a for a in d['data'] if a['title'] in v]; json.dump(d, open('$VAL', 'w'))"
# The answerability features' word statistics come from the training data (validation titles left out).
WS=()
[ -f "$CAND/word_stats.tsv.gz" ] || WS=(--word-stats "$S"/qa-train/*.json.xz "$S/squad/squad-dev-subset-v2.0.json")
$BIN/qa calibrate --squad "$VAL" --model "$CAND" "${WS[@]}" "${LIM[@]}" 2>&1 | grep -v '^ \|^[{}]' | tee "$CAND/calibrate.log"
export QA_READER_MODEL=$CAND
$BIN/qa eval --squad "$VAL" --closed --json --worst 0 "${LIM[@]}" > "$CAND/eval_closed.json" 2> "$CAND/eval_closed.log"
$BIN/qa eval --testset tests/data/qa_testset.jsonl --json --worst 0 > "$CAND/eval_testset.json" 2> "$CAND/eval_testset.log"
{ $BIN/ask "When was the second Istanbul round?" || true; $BIN/ask "Who won the 2022 FIFA World Cup?" || true; } > "$CAND/readme_questions.txt" 2>&1
cat "$CAND/readme_questions.txt"
$BIN/qa eval --squad "$VAL" --json --worst 0 "${LIM[@]}" > "$CAND/eval_open.json" 2> "$CAND/eval_open.log"
for f in eval_closed eval_open eval_testset; do
  $BIN/python -c "import json, sys; m = json.load(open(sys.argv[1])); print(sys.argv[2], {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items() if not isinstance(v, (dict, list))})" "$CAND/$f.json" "$f"
done
