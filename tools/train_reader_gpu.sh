#!/usr/bin/env bash
# Reader training on a lent GPU machine (issue 14), in one call of the device tool. That machine has
# torch, transformers, tokenizers, safetensors, numpy and tqdm but none of the service's other packages
# and no package registry; it sees only the working tree, so the training data travels in .gpu_data/.
#
#   tools/train_reader_gpu.sh prepare
#       here: copy ../shared/{qa-train,squad} into .gpu_data/ (kept out of git by .git/info/exclude)
#       and check that the tree that travels stays under the device tool's 64 MiB
#   device tool: run(command="tools/train_reader_gpu.sh train", carry=[".gpu_data"], timeout_s=600)
#       there: one stage from qa/models/reader on all the data, ending by MINUTES (default 8.5) after
#       the call starts, data preparation included; the fp16 model folder comes back in 15 MiB parts
#       (reader.tar.part-*) with train.log. Extra words after `train` go to qa.train (they win).
#   tools/train_reader_gpu.sh unpack FILES_AT OUT
#       here: reassemble the model folder into OUT, then evaluate it on CPU as any stage:
#       .venv/bin/python -m qa.train ... --out OUT --eval-only   and   tools/reader_candidate.sh OUT
#
# The CPU path (tools/train_reader_stage.sh) stays the one the README documents.
set -euo pipefail
CMD=${1:-}
[ $# -gt 0 ] && shift
DATA=.gpu_data
LIMIT_BYTES=$((64 * 1024 * 1024))

case "$CMD" in
prepare)
  S=${SHARED:-../shared}
  grep -qx '/.gpu_data/' .git/info/exclude 2>/dev/null || echo '/.gpu_data/' >> .git/info/exclude
  mkdir -p "$DATA"
  cp "$S"/qa-train/*.json.xz "$S"/squad/squad-dev-subset-v2.0.json "$DATA"/
  tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
  data=$(du -cb "$DATA"/* | tail -1 | cut -f1)
  total=$((tree + data))
  echo "travels: working tree $((tree / 1048576)) MiB + $DATA $((data / 1048576)) MiB = $((total / 1048576)) MiB (limit 64)"
  if [ "$total" -ge "$LIMIT_BYTES" ]; then
    echo "error: over the device tool's 64 MiB; remove untracked files or carry less" >&2
    exit 1
  fi
  ;;
train)
  PY=${PYTHON:-python3}
  # training ends 45 s before MINUTES are up, leaving time to save the model and pack it
  stop_at=$($PY -c "import time; print(int(time.time() + float('${MINUTES:-8.5}') * 60 - 45))")
  OUTDIR=${OUT:?train runs on the device machine, where the device tool sets OUT}
  for f in squad-train-v1.1.json.xz nq-qed.json.xz tydiqa-goldp-en.json.xz squad-dev-subset-v2.0.json; do
    [ -f "$DATA/$f" ] || { echo "error: $DATA/$f missing: run 'tools/train_reader_gpu.sh prepare' here and carry $DATA" >&2; exit 2; }
  done
  VAL=()
  for t in $($PY -c "import json; print(' '.join(json.load(open('qa/models/reader/split.json'))['val_titles']))"); do
    VAL+=(--val-title "$t")
  done
  { nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "nvidia-smi: no GPU listed"; } | tee "$OUTDIR/train.log"
  run=${RUN_DIR:-/tmp/reader_gpu}
  set +e
  PYTHONUNBUFFERED=1 $PY -m qa.train \
    --data "$DATA/squad-train-v1.1.json.xz" --data "$DATA/nq-qed.json.xz" \
    --data "$DATA/tydiqa-goldp-en.json.xz" --data "$DATA/squad-dev-subset-v2.0.json" \
    "${VAL[@]}" --out "$run" --base-model qa/models/reader --device cuda --threads 8 \
    --stop-at "$stop_at" --checkpoint-every 1000000000 --eval-every 0 --no-eval \
    --precision bf16 --batch-size 32 --lr 5e-5 --warmup 0.05 --epochs 3 --max-length 192 --stride 64 \
    --negatives 0.5 --sentence-negatives 0.3 --swap-negatives 0.3 --oversample squad-dev-subset-v2.0=6 \
    --seed 31 --stage-note "GPU stage: from the shipped reader, batch 32, lr 5e-5, up to 3 epochs in the time lent" \
    "$@" 2>&1 | tee -a "$OUTDIR/train.log"
  rc=${PIPESTATUS[0]}
  set -e
  if [ -f "$run/model.safetensors" ]; then
    tar -C "$run" --exclude='checkpoint*' -cf - . | split -b 15M - "$OUTDIR/reader.tar.part-"
    ls -l "$OUTDIR"
  fi
  exit "$rc"
  ;;
unpack)
  FROM=${1:?usage: tools/train_reader_gpu.sh unpack FILES_AT OUT}
  DEST=${2:?usage: tools/train_reader_gpu.sh unpack FILES_AT OUT}
  compgen -G "$FROM/reader.tar.part-*" > /dev/null || { echo "error: no reader.tar.part-* in $FROM" >&2; exit 2; }
  mkdir -p "$DEST"
  cat "$FROM"/reader.tar.part-* | tar -x -C "$DEST"
  [ -f "$FROM/train.log" ] && cp "$FROM/train.log" "$DEST/train_gpu.log"
  echo "unpacked into $DEST: $(ls "$DEST" | tr '\n' ' ')"
  ;;
*)
  echo "usage: tools/train_reader_gpu.sh prepare | train [qa.train options] | unpack FILES_AT OUT" >&2
  exit 2
  ;;
esac
