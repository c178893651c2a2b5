#!/usr/bin/env bash
# (bf16 training turned out slower than fp32 here, so the later pilots run fp32 against the fp32 baseline.)
# Short equal-budget comparisons before a long reader run (issue 14): precision, window length,
# starting weights and retrieval negatives. Each trains STEPS steps on the same seeded sample and
# scores 400 validation questions (closed, margin 0) at the end; the negatives pilots are also
# scored in open mode. Usage: tools/reader_pilots.sh OUT_DIR [STEPS]
set -euo pipefail
OUT=${1:?usage: tools/reader_pilots.sh OUT_DIR [STEPS]}
STEPS=${2:-120}
S=${SHARED:-../shared}
PY=.venv/bin/python
DATA=(--data "$S/qa-train/squad-train-v1.1.json.xz" --data "$S/qa-train/nq-qed.json.xz"
      --data "$S/qa-train/tydiqa-goldp-en.json.xz" --data "$S/squad/squad-dev-subset-v2.0.json")
VAL=()
for t in $($PY -c "import json; print(' '.join(json.load(open('qa/models/reader/split.json'))['val_titles']))"); do
  VAL+=(--val-title "$t")
done
common=("${DATA[@]}" "${VAL[@]}" --max-steps "$STEPS" --sample 20000 --seed 7 --lr 1e-4 --warmup 0.1
        --eval-every "$STEPS" --no-eval --checkpoint-every 100000)
pilot() { # name, then extra arguments
  local name=$1; shift
  [ -f "$OUT/$name/train_info.json" ] && return 0
  $PY -m qa.train "${common[@]}" --out "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
}
mkdir -p "$OUT"
while pgrep -f "qa.train .*--out $OUT/" >/dev/null; do sleep 5; done  # one training at a time
pilot reader-bf16-256-neg0.5 --base-model qa/models/reader --precision bf16 --max-length 256 --negatives 0.5
pilot reader-fp32-256-neg0.5 --base-model qa/models/reader --precision fp32 --max-length 256 --negatives 0.5
pilot reader-bf16-192-neg0.5 --base-model qa/models/reader --precision bf16 --max-length 192 --stride 64 --negatives 0.5
pilot minilm-fp32-256-neg0.5 --precision fp32 --max-length 256 --negatives 0.5
pilot reader-fp32-256-neg1 --base-model qa/models/reader --precision fp32 --max-length 256 --negatives 1.0
# Open mode for the negatives pilots: retrieval over all 222 validation paragraphs, 3 passages read.
$PY -c "import json; d = json.load(open('$S/squad/squad-dev-subset-v2.0.json')); v = set(json.load(open('qa/models/reader/split.json'))['val_titles']); d['data'] = [a for a in d['data'] if a['title'] in v]; json.dump(d, open('$OUT/squad-val.json', 'w'))"
for name in reader-fp32-256-neg0.5 reader-fp32-256-neg1; do
  [ -f "$OUT/$name.open.json" ] && continue
  QA_READER_MODEL="$OUT/$name" QA_NO_ANSWER_MARGIN=0 QA_READER_TYPE_WEIGHT=0 \
    .venv/bin/qa eval --squad "$OUT/squad-val.json" --json --worst 0 > "$OUT/$name.open.json" 2> "$OUT/$name.open.log"
done
