"""The activation store and cache: keyed per text, extracted once, reused by any split or search."""

from __future__ import annotations

import numpy as np
import pytest

from w2s_ray.activations import ActivationStore, SplitActivations, model_key, text_keys
from w2s_ray.pipeline.cache import StageCache
from w2s_ray.search.cli import parse_settings
from w2s_ray.search.driver import compute_shared, plan_search
from w2s_ray.train.executor import LocalExecutor

PROBE_SPACE = """\
weak: tiny-bert
strong: tiny-bert
params:
  mode: {fixed: probe}
  lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true, default: 1.0e-2}
  epochs: {type: int, low: 2, high: 8, default: 4}
  weight_decay: {type: float, low: 1.0e-4, high: 1.0, log: true, default: 1.0e-2}
  layer: {type: int, low: 0, high: 2, default: 2}
  loss: {type: categorical, choices: [xent, logconf], default: xent}
  aux_coef: {type: float, low: 0.1, high: 1.0, default: 0.5, when: {loss: logconf}}
baseline:
  - {loss: xent}
"""


def probe_plan(tmp_path, data_dir, *extra: str, task: str = "sst2"):
    space = tmp_path / "probe_space.yaml"
    space.write_text(PROBE_SPACE.replace("[xent, logconf], default: xent", "[bt, bt_logconf], default: bt")
                     .replace("loss: logconf", "loss: bt_logconf").replace("{loss: xent}", "{loss: bt}")
                     if task == "rm" else PROBE_SPACE)
    return plan_search(parse_settings([
        "--task", task, "--preset", "tiny-probe", "--space", str(space), "--data-dir", data_dir,
        "--storage", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"),
        "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", *extra]))


def extractions(cache: StageCache) -> list[dict]:
    return [t for t in cache.trainings() if t["stage"] == "activations"]


def test_store_round_trip_is_keyed_per_text(tmp_path):
    store = ActivationStore(StageCache(tmp_path), model_key("m", "mean", 16))
    keys = text_keys(store.mkey, [[1, 2], [3], [4, 5, 6]])
    hidden = np.random.default_rng(0).normal(size=(3, 2, 4)).astype(np.float16)
    assert store.missing(keys) == [0, 1, 2]
    store.publish(keys, hidden, {})
    assert store.missing(keys) == []
    np.testing.assert_array_equal(store.read([keys[2], keys[0]]), hidden[[2, 0]])
    # another model, max length or pooling is another key for the same tokens
    assert text_keys(model_key("m", "mean", 32), [[1, 2]]) != keys[:1]
    assert text_keys(model_key("m", "last", 16), [[1, 2]]) != keys[:1]
    with pytest.raises(KeyError):
        store.read(text_keys(store.mkey, [[9]]))


def test_an_unpublished_shard_is_invisible(tmp_path):
    cache = StageCache(tmp_path)
    store = ActivationStore(cache, model_key("m", "mean", 16))
    staging = cache.staging_dir(store.kind, "half-written")  # a writer killed before publishing
    (staging / "keys.npy").write_bytes(b"")
    assert cache.entries(store.kind) == []
    assert store.missing(text_keys(store.mkey, [[1]])) == [0]


def test_activations_are_reused_across_searches_with_other_split_seeds(tmp_path, data_dir, model_cache):
    """The counting test: a second search over the same texts, split by another seed, extracts nothing."""
    first = probe_plan(tmp_path, data_dir, "--seed", "0")
    cache = StageCache(first.cache_uri)
    compute_shared(first, LocalExecutor())
    [done] = extractions(cache)  # weak and strong are the same tiny model: one extraction
    assert done["texts"] == sum(len(s) for s in first.data.splits.values())

    second = probe_plan(tmp_path, data_dir, "--seed", "1", "--pool-seed", "0")
    assert {n: s.ids for n, s in second.data.splits.items()} != {n: s.ids for n, s in first.data.splits.items()}
    shared = compute_shared(second, LocalExecutor())
    assert len(extractions(cache)) == 1  # zero new extractions
    assert shared.weak.key != compute_shared(first, LocalExecutor()).weak.key  # other splits, other weak model

    # a fresh draw overlaps the first pool only in part: only the unseen texts are extracted
    third = probe_plan(tmp_path, data_dir, "--seed", "2")
    compute_shared(third, LocalExecutor())
    new = extractions(cache)[1:]
    assert len(new) == 1 and 0 < new[0]["texts"] < done["texts"]


def test_probe_references_fit_in_process_on_cached_features(tmp_path, data_dir, model_cache):
    plan = probe_plan(tmp_path, data_dir)
    shared = compute_shared(plan, LocalExecutor())
    trainings = StageCache(plan.cache_uri).trainings()
    fits = [t for t in trainings if t["stage"] in ("weak", "ceiling")]
    grid = len(plan.preset.weak_grid) + len(plan.preset.ceiling_grid)
    assert len(fits) == grid and all(t["probe"] for t in fits)
    chosen = shared.selection["ceiling"]["chosen"]
    assert set(chosen) == {"layer", "weight_decay"}
    assert shared.weak.metrics["executor"] == "in-process probe"
    assert (shared.weak.path / "checkpoint" / "probe.safetensors").exists()
    # what every trial receives: the strong model's activations, already loaded
    assert set(shared.activations._hidden) == {"tiny-bert"}


def test_pairwise_probe_features_hold_both_texts(tmp_path, data_dir, model_cache):
    plan = probe_plan(tmp_path, data_dir, task="rm")
    acts = SplitActivations(plan.data, plan.cache_uri, plan.reference_base.max_length)
    feats = acts.get("tiny-bert", 1, LocalExecutor())
    assert feats["a"].shape == (len(plan.data.splits["a"]), 2, 32)  # [pairs, (text_a, text_b), hidden]
    assert not np.allclose(feats["a"][:, 0], feats["a"][:, 1])
    shared = compute_shared(plan, LocalExecutor())
    assert 0.0 <= shared.weak_val_acc <= 1.0


def test_float32_features_are_converted_once_per_process_and_read_only(tmp_path, data_dir, model_cache):
    """A reused trial process (a new context per trial) reads the same float32 arrays again."""
    plan = probe_plan(tmp_path, data_dir)
    first = SplitActivations(plan.data, plan.cache_uri, plan.reference_base.max_length).get("tiny-bert", 1,
                                                                                           LocalExecutor())
    again = SplitActivations(plan.data, plan.cache_uri, plan.reference_base.max_length)
    second = again.get("tiny-bert", 1)
    assert all(second[name] is first[name] for name in first)
    assert not again._hidden  # nothing loaded from the store for the second context
    other = again.get("tiny-bert", 2)  # another layer is converted from the stored float16
    assert not np.array_equal(other["a"], first["a"])
    with pytest.raises(ValueError):
        first["a"][0, 0] = 1.0  # shared: a caller cannot change them for the next trial
