"""Adding a loss is one entry: a loss registered in a module of its own runs through a tiny run
and is searchable from a space file, with no other file touched."""

from __future__ import annotations

import sys
import textwrap

import pytest

from w2s_ray.config import DataConfig, SplitSizes, TrainConfig
from w2s_ray.losses import LOSSES, PARAM_BOUNDS
from w2s_ray.pipeline.cache import StageCache
from w2s_ray.pipeline.experiment import ExperimentSpec, run_experiment

PLUGIN = textwrap.dedent('''
    import torch
    from w2s_ray.losses import register_loss

    @register_loss("scaled_xent", params={"scale": 1.0}, kinds=["classify"], bounds={"scale": (0.1, 10.0)})
    def scaled_xent(logits, targets, progress=0.0, scale=1.0):
        """Cross-entropy on scaled logits (a test plugin)."""
        p = torch.sigmoid(logits * scale)
        return -(targets * torch.log(p + 1e-7) + (1 - targets) * torch.log(1 - p + 1e-7)).mean()
''')


@pytest.fixture
def plugin_loss(tmp_path, monkeypatch):
    (tmp_path / "my_losses.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("my_losses")
    yield "scaled_xent"
    LOSSES.pop("scaled_xent", None)
    PARAM_BOUNDS.pop("scale", None)
    sys.modules.pop("my_losses", None)


def test_a_registered_loss_runs_through_a_tiny_run(plugin_loss, tmp_path, data_dir, model_cache):
    base = TrainConfig(lr=1e-2, epochs=3, batch_size=16, max_length=32, mode="probe")
    spec = ExperimentSpec(data=DataConfig(task="sst2", data_dir=data_dir, sizes=SplitSizes(40, 40, 24, 24)),
                          weak="tiny-bert", strong="tiny-bert", weak_cfg=base, ceiling_cfg=base,
                          student_cfg=base.replace(loss=plugin_loss, loss_params={"scale": 2.0}))
    report = run_experiment(spec, StageCache(tmp_path / "cache"))
    assert report["loss"] == "scaled_xent" and report["loss_params"] == {"scale": 2.0}
    assert 0.0 <= report["val"]["student_acc"] <= 1.0


def test_a_registered_loss_and_its_parameter_are_searchable(plugin_loss, tmp_path):
    from w2s_ray.search.space import load_space

    path = tmp_path / "space.yaml"
    path.write_text("params:\n  loss: {type: categorical, choices: [xent, scaled_xent]}\n"
                    "  scale: {type: float, low: 0.5, high: 4.0, when: {loss: scaled_xent}}\n")
    space = load_space(path, kind="classify")
    assert space.params["scale"].when == {"loss": ("scaled_xent",)}
    bad = tmp_path / "bad.yaml"
    bad.write_text("params:\n  loss: {fixed: scaled_xent}\n  scale: {type: float, low: 0.5, high: 40.0}\n")
    from w2s_ray.errors import UserError

    with pytest.raises(UserError, match="scale"):  # the loss's own bounds apply
        load_space(bad, kind="classify")
