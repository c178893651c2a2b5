#!/usr/bin/env bash
# One resumable stage of reader training on all of ../shared/qa-train/ plus the training titles of
# ../shared/squad/ (the six validation titles of qa/models/reader/split.json held out), then the
# closed-mode validation sweep. Rerun the same command to resume after a stop.
#   tools/train_reader_stage.sh OUT BASE BUDGET_MIN [extra qa train-reader options]
# e.g. tools/train_reader_stage.sh train_run/v2 qa/models/reader 85 --negatives 0.5
set -euo pipefail
OUT=${1:?usage: tools/train_reader_stage.sh OUT BASE BUDGET_MIN [options]}
BASE=${2:?base model folder}
BUDGET=${3:?time budget in minutes}
shift 3
S=${SHARED:-../shared}
PY=.venv/bin/python
VAL=()
for t in $($PY -c "import json; print(' '.join(json.load(open('qa/models/reader/split.json'))['val_titles']))"); do
  VAL+=(--val-title "$t")
done
exec $PY -m qa.train \
  --data "$S/qa-train/squad-train-v1.1.json.xz" --data "$S/qa-train/nq-qed.json.xz" \
  --data "$S/qa-train/tydiqa-goldp-en.json.xz" --data "$S/squad/squad-dev-subset-v2.0.json" \
  "${VAL[@]}" --out "$OUT" --base-model "$BASE" --time-budget-min "$BUDGET" \
  --checkpoint-every 100 --eval-every 300 "$@"
