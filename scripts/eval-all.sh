#!/usr/bin/env bash
# Evaluates every installed model as served: on its held-out test set plus a reject set
# (release targets checked), and the chest model also on external/ (the dataset's official test
# split: images from outside the training pool; issue 10's targets reported). Each evaluation is
# also the regression gate: it fails when a figure falls below the committed evaluation its model
# card is rendered from (docs/models/<id>.eval.json, <id>.external.eval.json).
# Writes <id>.eval.json and chest-xray.external.eval.json into EVAL_OUT_DIR (default docs/models).
# Exit status 1 if a model misses a test target, falls below its card, or cannot be evaluated.
#
#   scripts/eval-all.sh [model-id ...]        (default: brain-mri chest-xray)
#   DATASETS_DIR=/path/to/datasets MODELS_DIR=/path/to/models scripts/eval-all.sh
#   EVAL_BASELINE=none scripts/eval-all.sh    (after retraining: no card to compare with yet)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATASETS_DIR="${DATASETS_DIR:-$ROOT/../shared/datasets}"
MODELS_DIR="${MODELS_DIR:-$ROOT/models}"
OUT_DIR="${EVAL_OUT_DIR:-$ROOT/docs/models}"
CARDS_DIR="$ROOT/docs/models"
MODELS=("$@")
[ ${#MODELS[@]} -eq 0 ] && MODELS=(brain-mri chest-xray)

other_of() { case "$1" in brain-mri) echo chest-xray ;; chest-xray) echo brain-mri ;; *) return 1 ;; esac; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT_DIR"
status=0
cd "$ROOT"

# evaluate <id> <data dir> <name of the eval file> <description> <extra eval args...>
evaluate() {
  local id="$1" data="$2" name="$3" description="$4"
  shift 4
  local args=("$@")
  local baseline="$CARDS_DIR/$name.eval.json"
  if [ "${EVAL_BASELINE:-}" != "none" ] && [ -f "$baseline" ]; then
    # A copy: the output may overwrite the committed file.
    cp "$baseline" "$TMP/$name.baseline.json"
    args+=(--baseline "$TMP/$name.baseline.json")
  fi
  echo "[$name] evaluating on $description"
  set +e
  node_modules/.bin/tsx src/ml/eval-cli.ts --model "$id" --data "$data" --models-dir "$MODELS_DIR" --json "${args[@]}" \
    > "$TMP/$name.out"
  local code=$?
  set -e
  # Everything but the last line is the human-readable report; the last line is the JSON.
  sed '$d' "$TMP/$name.out"
  local last
  last="$(tail -n 1 "$TMP/$name.out")"
  if [[ "$last" == \{* ]]; then
    # Keep the committed file free of this machine's temporary paths.
    printf '%s\n' "$last" | node -e '
      let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
        const r = JSON.parse(s); r.dataDir = process.argv[1];
        process.stdout.write(JSON.stringify(r, null, 2) + "\n");
      });' "$description" > "$OUT_DIR/$name.eval.json"
    echo "[$name] wrote $OUT_DIR/$name.eval.json"
  else
    echo "[$name] evaluation failed" >&2
  fi
  [ "$code" -ne 0 ] && status=1
  return 0
}

link_classes() {
  mkdir -p "$2"
  for class_dir in "$1"/*/; do
    ln -s "$(cd "$class_dir" && pwd)" "$2/$(basename "$class_dir")"
  done
}

for id in "${MODELS[@]}"; do
  other="$(other_of "$id")" || { echo "unknown model $id" >&2; status=1; continue; }
  test_dir="$DATASETS_DIR/$id/test"
  if [ ! -f "$MODELS_DIR/$id.json" ]; then echo "[$id] not installed in $MODELS_DIR" >&2; status=1; continue; fi
  if [ ! -d "$test_dir" ]; then echo "[$id] no test set at $test_dir" >&2; status=1; continue; fi

  data="$TMP/$id"
  link_classes "$test_dir" "$data"
  node_modules/.bin/tsx scripts/make-reject-set.ts --out "$data/reject" --other "$DATASETS_DIR/$other/test" --other-count 100
  evaluate "$id" "$data" "$id" "datasets/$id/test + reject (scripts/make-reject-set.ts)" --check-targets

  external_dir="$DATASETS_DIR/$id/external"
  if [ -d "$external_dir" ]; then
    link_classes "$external_dir" "$TMP/$id-external"
    evaluate "$id" "$TMP/$id-external" "$id.external" "datasets/$id/external" --targets external
  fi
done
exit $status
