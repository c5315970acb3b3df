#!/usr/bin/env bash
# Evaluates every installed model on its held-out test set plus a reject set, checks the
# release targets, and writes docs/models/<id>.eval.json. Exit status 1 if a model misses a
# target or cannot be evaluated (the JSON is still written when the eval ran).
#
#   scripts/eval-all.sh [model-id ...]        (default: brain-mri chest-xray)
#   DATASETS_DIR=/path/to/datasets MODELS_DIR=/path/to/models scripts/eval-all.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATASETS_DIR="${DATASETS_DIR:-$ROOT/../shared/datasets}"
MODELS_DIR="${MODELS_DIR:-$ROOT/models}"
OUT_DIR="${EVAL_OUT_DIR:-$ROOT/docs/models}"
MODELS=("$@")
[ ${#MODELS[@]} -eq 0 ] && MODELS=(brain-mri chest-xray)

other_of() { case "$1" in brain-mri) echo chest-xray ;; chest-xray) echo brain-mri ;; *) return 1 ;; esac; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT_DIR"
status=0
cd "$ROOT"
for id in "${MODELS[@]}"; do
  other="$(other_of "$id")" || { echo "unknown model $id" >&2; status=1; continue; }
  test_dir="$DATASETS_DIR/$id/test"
  if [ ! -f "$MODELS_DIR/$id.json" ]; then echo "[$id] not installed in $MODELS_DIR" >&2; status=1; continue; fi
  if [ ! -d "$test_dir" ]; then echo "[$id] no test set at $test_dir" >&2; status=1; continue; fi

  data="$TMP/$id"
  mkdir -p "$data"
  for class_dir in "$test_dir"/*/; do
    ln -s "$(cd "$class_dir" && pwd)" "$data/$(basename "$class_dir")"
  done
  node_modules/.bin/tsx scripts/make-reject-set.ts --out "$data/reject" --other "$DATASETS_DIR/$other/test" --other-count 100

  echo "[$id] evaluating on $test_dir + reject/"
  set +e
  node_modules/.bin/tsx src/ml/eval-cli.ts --model "$id" --data "$data" --models-dir "$MODELS_DIR" --json --check-targets \
    > "$TMP/$id.out"
  code=$?
  set -e
  # Everything but the last line is the human-readable report; the last line is the JSON.
  sed '$d' "$TMP/$id.out"
  last="$(tail -n 1 "$TMP/$id.out")"
  if [[ "$last" == \{* ]]; then
    # Keep the committed file free of this machine's temporary paths.
    printf '%s\n' "$last" | node -e '
      let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
        const r = JSON.parse(s); r.dataDir = process.argv[1];
        process.stdout.write(JSON.stringify(r, null, 2) + "\n");
      });' "datasets/$id/test + reject (scripts/make-reject-set.ts)" > "$OUT_DIR/$id.eval.json"
    echo "[$id] wrote $OUT_DIR/$id.eval.json"
  else
    echo "[$id] evaluation failed" >&2
  fi
  [ "$code" -ne 0 ] && status=1
done
exit $status
