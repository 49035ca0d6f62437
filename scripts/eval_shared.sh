#!/usr/bin/env bash
# Run `searchkit eval` over the shared BEIR sets with the offline model, one after the other,
# keeping the indexes in a shared cache (reused on re-runs) and the figures as JSON.
# Defaults: sets in ../shared/eval, indexes in ../evalcache (beside the checkout; EVAL_ROOT and
# EVAL_CACHE override).
#   scripts/eval_shared.sh OUT_DIR SET[:MODES] ...     e.g. scripts/eval_shared.sh /tmp/ev git_whatis passkey_sotu_512w:doc-first,late-long
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$1; shift
mkdir -p "$out"
export HF_HUB_OFFLINE=1
for item in "$@"; do
  set_name=${item%%:*}; modes=""
  [[ $item == *:* ]] && modes="--modes ${item#*:}"
  echo "$(date -u +%H:%M:%S) start $item"
  nice -n 5 python3 -m searchkit eval "${EVAL_ROOT:-$repo/../shared/eval}/$set_name" --model all-MiniLM-L6-v2 \
    --work-dir "${EVAL_CACHE:-$repo/../evalcache}/$set_name" $modes --json ${EVAL_ARGS:-} \
    > "$out/$set_name.json" 2> "$out/$set_name.log"
  echo "$(date -u +%H:%M:%S) done $item rc=$?"
done
