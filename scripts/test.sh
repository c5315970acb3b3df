#!/usr/bin/env bash
# The whole test suite (npm test): type-check and lint, then every *.test.ts with node's test runner
# (database tests run on PGlite and on the PostgreSQL server), then the model evaluation
# against the targets on ../shared/datasets/*/test.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc --noEmit
# The web app's own type-check, against API types generated afresh from the server's OpenAPI document.
npx tsx scripts/build-web.ts --types
npx tsc --noEmit -p web
npx eslint .
# Unused files, exports, types and dependencies (entry points and exceptions in knip.jsonc).
npx knip --no-progress
mapfile -t files < <(find src test -name '*.test.ts' -not -path '*/node_modules/*' | sort)
node --import tsx --test --test-concurrency=1 --test-timeout=600000 "$@" "${files[@]}"
if [ -d ../shared/datasets ] && [ -z "${SKIP_MODEL_EVAL:-}" ]; then
  # The committed docs/models/*.eval.json are refreshed by running eval-all.sh by hand.
  EVAL_OUT_DIR="$(mktemp -d)" bash scripts/eval-all.sh
fi
