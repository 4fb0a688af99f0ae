"""Search spaces: the default YAML files, Optuna define-by-run, baseline points and bad input."""

from __future__ import annotations

import pickle
import textwrap
from pathlib import Path

import optuna
import pytest

from w2s_ray.errors import UserError
from w2s_ray.losses import LOSSES
from w2s_ray.search.space import ParamSpec, SearchSpace, default_space_path, load_space, spaces_dir, split_config

optuna.logging.set_verbosity(optuna.logging.WARNING)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FILES = sorted((REPO / "search_spaces").glob("*.yaml"))
PAIRWISE_FILES = {"rm", "default_pairwise", "probe_pairwise"}
TASKS = ["rm", "sst2", "chess", "sciq", "imdb", "amazon_polarity", "boolq", "cosmos_qa", "anthropic_hh"]


def kind_of(path: Path) -> str:
    return "pairwise" if path.stem in PAIRWISE_FILES else "classify"


# A valid space; error cases edit one line of it. Line numbers are found by text, not hard-coded.
BASE = textwrap.dedent(
    """\
    task: sst2
    weak: m@L1
    strong: m
    ladder:
      - m@L2
      - m@L4
    params:
      lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
      epochs: {type: int, low: 1, high: 3}
      loss: {type: categorical, choices: [xent, logconf, product, entropy]}
      aux_coef: {type: float, low: 0.1, high: 1.0, when: {loss: [logconf, entropy]}}
      warmup_frac: {type: float, low: 0.0, high: 0.5, when: {loss: logconf}}
      alpha: {type: float, low: 0.5, high: 2.0, when: {loss: product}}
      bootstrap_steps: {type: int, low: 0, high: 2}
      mode: {type: categorical, choices: [finetune, probe, lora]}
      lora_r: {type: int, low: 4, high: 16, step: 4, when: {mode: lora}}
      batch_size: {fixed: 32}
      weak_label_transform: {type: categorical, choices: [soft, hard]}
    baseline:
      - {loss: xent, lr: 5.0e-5}
      - {loss: logconf, aux_coef: 0.5}
    """
)


def write(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def line_of(text: str, needle: str) -> int:
    """1-based line of the only line containing ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


def edit(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


@pytest.fixture(scope="module")
def base_space(tmp_path_factory) -> SearchSpace:
    return load_space(write(tmp_path_factory.mktemp("space"), BASE, "good.yaml"), "classify", task="sst2")


# ---------------------------------------------------------------------------------------------
# Default files


def test_every_task_has_a_default_file():
    assert {p.stem for p in DEFAULT_FILES} >= set(TASKS) | {"default_classify"}
    for task in TASKS:
        assert default_space_path(task) == spaces_dir() / f"{task}.yaml"


@pytest.mark.parametrize("path", DEFAULT_FILES, ids=lambda p: p.stem)
def test_default_file_loads_and_is_consistent(path: Path):
    space = load_space(path, kind_of(path), task=None if path.stem.startswith("default_") else path.stem)
    assert space.params and "loss" in space.params and "lr" in space.params
    assert space.params["lr"].log and space.params["lr"].low > 0
    assert space.weak and space.strong and len(space.ladder) >= space.params["bootstrap_steps"].high
    points = space.points_to_evaluate()
    assert len(points) >= 2  # the plain loss and the confidence loss
    assert len({tuple(sorted(p.items())) for p in points}) == len(points)
    for point in points:
        full = space.complete(point)
        for name, value in full.items():
            assert space.params[name].contains(value), (name, value)
            assert space.is_active(name, full)
    losses = space.params["loss"].choices
    assert all(kind_of(path) in LOSSES[loss].kinds for loss in losses)


def test_every_registered_task_gets_a_valid_space():
    """Each task in the task registry resolves to a file that validates for its kind."""
    from w2s_ray.tasks.registry import TASKS as REGISTERED

    for name, task in REGISTERED.items():
        path = default_space_path(name, task.kind)
        space = load_space(path, task.kind, task=name)
        assert space.task in (None, name) and space.kind == task.kind


def test_max_bootstrap_steps(base_space: SearchSpace):
    assert base_space.max_bootstrap_steps() == base_space.params["bootstrap_steps"].high == 2


def test_default_space_path_falls_back_to_the_kind_default():
    assert default_space_path("no_such_task_xyz") == spaces_dir() / "default_classify.yaml"
    assert default_space_path("no_such_task_xyz", kind="pairwise") == spaces_dir() / "default_pairwise.yaml"


def test_spaces_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("W2S_SPACES_DIR", str(tmp_path))
    write(tmp_path, BASE, "default_classify.yaml")
    assert default_space_path("sst2") == tmp_path / "default_classify.yaml"
    monkeypatch.setenv("W2S_SPACES_DIR", str(tmp_path / "empty"))
    with pytest.raises(UserError, match="--space"):
        default_space_path("sst2")


# ---------------------------------------------------------------------------------------------
# Optuna define-by-run


def run_define_by_run(space: SearchSpace, sampler: optuna.samplers.BaseSampler, n: int):
    study = optuna.create_study(direction="maximize", sampler=sampler)
    out = []
    for i in range(n):
        trial = study.ask()
        constants = space.define_by_run(trial)
        out.append((dict(trial.params), constants))
        study.tell(trial, float(i % 5))
    return out


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_define_by_run_suggests_only_active_params(base_space: SearchSpace, sampler: str):
    s = optuna.samplers.RandomSampler(seed=0) if sampler == "random" else optuna.samplers.TPESampler(
        seed=0, n_startup_trials=5
    )
    seen_losses, seen_modes = set(), set()
    for params, constants in run_define_by_run(base_space, s, 40):
        loss, mode = params["loss"], params["mode"]
        seen_losses.add(loss)
        seen_modes.add(mode)
        assert ("aux_coef" in params) == (loss in ("logconf", "entropy"))
        assert ("warmup_frac" in params) == (loss == "logconf")
        assert ("alpha" in params) == (loss == "product")
        assert ("lora_r" in params) == (mode == "lora")
        assert "batch_size" not in params  # constants are returned, never suggested
        assert constants == {"batch_size": 32}
        for name, value in params.items():
            assert base_space.params[name].contains(value), (name, value)
    # the conditional branches were actually exercised
    assert {"xent", "logconf", "product"} <= seen_losses and "lora" in seen_modes


def test_define_by_run_returns_none_without_constants(tmp_path):
    text = BASE.replace("  batch_size: {fixed: 32}\n", "")
    space = load_space(write(tmp_path, text), "classify")
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
    assert space.define_by_run(trial) is None
    assert set(trial.params) >= {"lr", "epochs", "loss", "mode"}


def test_conditional_constant_only_when_active(tmp_path):
    text = BASE.replace("  batch_size: {fixed: 32}", "  batch_size: {fixed: 16, when: {mode: probe}}")
    space = load_space(write(tmp_path, text), "classify")
    results = run_define_by_run(space, optuna.samplers.RandomSampler(seed=2), 30)
    assert {p["mode"] for p, _ in results} == {"finetune", "probe", "lora"}
    for params, constants in results:
        assert constants == ({"batch_size": 16} if params["mode"] == "probe" else None)


def test_points_to_evaluate_reproduced_by_enqueue(base_space: SearchSpace):
    """Each baseline point, enqueued as OptunaSearch does, is suggested back exactly."""
    points = base_space.points_to_evaluate()
    assert [p["loss"] for p in points] == ["xent", "logconf"]
    assert points[0]["lr"] == 5.0e-5 and points[1]["aux_coef"] == 0.5
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    for point in points:
        study.enqueue_trial(point)
    for point in points:
        trial = study.ask()
        constants = base_space.define_by_run(trial)
        assert trial.params == point
        assert {k: type(v) for k, v in trial.params.items()} == {k: type(v) for k, v in point.items()}
        assert {**point, **constants} == base_space.complete(point)
        study.tell(trial, 0.5)


@pytest.mark.parametrize("path", DEFAULT_FILES, ids=lambda p: p.stem)
def test_default_points_reproduced_by_enqueue(path: Path):
    space = load_space(path, kind_of(path))
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    points = space.points_to_evaluate()
    for point in points:
        study.enqueue_trial(point)
    for point in points:
        trial = study.ask()
        space.define_by_run(trial)
        assert trial.params == point


def test_ray_optuna_search_accepts_space_and_baseline(base_space: SearchSpace):
    """The real Ray searcher: define-by-run space, baseline first, constants merged in."""
    from ray.tune.search.optuna import OptunaSearch

    points = base_space.points_to_evaluate()
    searcher = OptunaSearch(
        space=base_space.define_by_run, metric="pgr", mode="max", points_to_evaluate=points, seed=0
    )
    first = [searcher.suggest(f"t{i}") for i in range(len(points))]
    assert first == [base_space.complete(p) for p in points]
    later = searcher.suggest("t_next")
    assert later["batch_size"] == 32 and base_space.params["loss"].contains(later["loss"])


def test_loss_specific_defaults(base_space: SearchSpace):
    """aux_coef has no default in the file: each loss's own registry default completes it."""
    for loss in ("logconf", "entropy"):
        full = base_space.complete({"loss": loss})
        assert full["aux_coef"] == LOSSES[loss].params["aux_coef"]
    assert LOSSES["logconf"].params["aux_coef"] != LOSSES["entropy"].params["aux_coef"]


def test_sample_defaults(base_space: SearchSpace):
    defaults = base_space.sample_defaults()
    assert defaults["loss"] == "xent" and defaults["mode"] == "finetune" and defaults["batch_size"] == 32
    assert defaults["bootstrap_steps"] == 0  # the paper's default, in range
    assert "aux_coef" not in defaults and "lora_r" not in defaults
    lr = base_space.params["lr"]
    assert lr.low <= defaults["lr"] <= lr.high and isinstance(defaults["epochs"], int)


def test_baseline_defaults_to_sample_defaults_when_absent(tmp_path):
    text = BASE.split("baseline:")[0]
    space = load_space(write(tmp_path, text), "classify")
    defaults = space.sample_defaults()
    assert space.points_to_evaluate() == [{k: v for k, v in defaults.items() if k != "batch_size"}]


def test_complete_refuses_bad_point(base_space: SearchSpace):
    with pytest.raises(UserError, match="aux_coef: is inactive"):
        base_space.complete({"loss": "xent", "aux_coef": 0.3})
    with pytest.raises(UserError, match=r"epochs: 2\.5"):
        base_space.complete({"epochs": 2.5})


def test_space_pickles_for_ray(base_space: SearchSpace):
    clone = pickle.loads(pickle.dumps(base_space))
    assert clone.points_to_evaluate() == base_space.points_to_evaluate()
    fn = pickle.loads(pickle.dumps(base_space.define_by_run))
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3)).ask()
    assert fn(trial) == {"batch_size": 32}


def test_split_config(base_space: SearchSpace):
    knobs, loss_params = split_config(base_space.complete({"loss": "logconf"}))
    assert set(loss_params) == {"aux_coef", "warmup_frac"}
    assert knobs["loss"] == "logconf" and "lr" in knobs


def test_exponent_without_dot_is_a_float(tmp_path):
    text = edit("low: 1.0e-5, high: 1.0e-3", "low: 1e-5, high: 1e-3")
    spec = load_space(write(tmp_path, text), "classify").params["lr"]
    assert isinstance(spec, ParamSpec) and spec.low == 1e-5 and spec.high == 1e-3


def test_scalar_shorthand_is_a_constant(tmp_path):
    text = edit("  batch_size: {fixed: 32}", "  batch_size: 64")
    spec = load_space(write(tmp_path, text), "classify").params["batch_size"]
    assert spec.type == "fixed" and spec.value == 64


def test_pairwise_space_uses_pairwise_losses(tmp_path):
    text = edit("[xent, logconf, product, entropy]", "[bt, bt_logconf]")
    text = text.replace("when: {loss: [logconf, entropy]}", "when: {loss: bt_logconf}")
    text = text.replace("when: {loss: logconf}", "when: {loss: bt_logconf}")
    text = text.replace("  alpha: {type: float, low: 0.5, high: 2.0, when: {loss: product}}\n", "")
    text = text.replace("{loss: xent, lr: 5.0e-5}", "{loss: bt}").replace("{loss: logconf,", "{loss: bt_logconf,")
    space = load_space(write(tmp_path, text), "pairwise")
    assert [p["loss"] for p in space.points_to_evaluate()] == ["bt", "bt_logconf"]


# ---------------------------------------------------------------------------------------------
# Bad input: one line naming file, line and key


def assert_error(tmp_path: Path, text: str, needle: str, key: str, *fragments: str, kind: str = "classify",
                 task: str | None = None) -> str:
    path = write(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_space(path, kind, task=task)
    msg = str(info.value)
    assert "\n" not in msg
    assert f"bad.yaml:{line_of(text, needle)}: " in msg, msg
    assert key in msg, msg
    for frag in fragments:
        assert frag in msg, msg
    return msg


CASES = {
    # id: (old line fragment, replacement, line needle, key, message fragments)
    "unknown_top_level_key": ("baseline:", "paramz: {}\nbaseline:", "paramz", "paramz", ["unknown top-level key"]),
    "unknown_param_name": ("  epochs:", "  learning_rate: {type: float, low: 0.1, high: 0.2}\n  epochs:",
                           "learning_rate", "params.learning_rate", ["unknown parameter", "available:"]),
    "unknown_param_field": ("high: 1.0e-3, log: true}", "high: 1.0e-3, log: true, lo: 3}", "  lr:",
                            "params.lr", ["unknown field 'lo'"]),
    "missing_type": ("lr: {type: float, low: 1.0e-5", "lr: {low: 1.0e-5", "  lr:", "params.lr", ["missing 'type'"]),
    "low_gt_high": ("low: 1.0e-5, high: 1.0e-3", "low: 0.01, high: 0.001", "  lr:", "params.lr",
                    ["low (0.01) > high (0.001)"]),
    "log_range_with_zero": ("low: 1.0e-5, high: 1.0e-3", "low: 0.0, high: 1.0e-3", "  lr:", "params.lr",
                            ["log range must be positive"]),
    "log_range_negative": ("alpha: {type: float, low: 0.5, high: 2.0,",
                           "alpha: {type: float, low: -1.0, high: 2.0, log: true,",
                           "  alpha:", "params.alpha", ["log range must be positive", "-1.0"]),
    "string_bound": ("low: 1.0e-5, high", "low: abc, high", "  lr:", "params.lr.low", ["'abc'", "not a number"]),
    "quoted_number_bound": ("low: 1.0e-5, high", "low: '1.0e-5', high", "  lr:", "params.lr.low", ["not a number"]),
    "float_bounds_for_int": ("epochs: {type: int, low: 1,", "epochs: {type: int, low: 1.5,", "  epochs:",
                             "params.epochs.low", ["not an integer"]),
    "float_type_for_int_knob": ("epochs: {type: int", "epochs: {type: float", "  epochs:", "params.epochs.type",
                                ["an integer knob"]),
    "choices_not_a_list": ("choices: [finetune, probe, lora]", "choices: finetune", "  mode:",
                           "params.mode.choices", ["must be a list"]),
    "empty_choices": ("choices: [finetune, probe, lora]", "choices: []", "  mode:", "params.mode.choices",
                      ["is empty"]),
    "duplicate_choice": ("choices: [soft, hard]", "choices: [soft, hard, soft]", "weak_label_transform",
                         "params.weak_label_transform.choices", ["duplicate choice 'soft'"]),
    "log_not_bool": ("log: true", "log: sometimes", "  lr:", "params.lr.log", ["true or false"]),
    "unknown_loss": ("[xent, logconf, product, entropy]", "[xent, logconf, product, entropy, focal]", "  loss:",
                     "params.loss.choices", ["unknown loss 'focal'", "xent"]),
    "pairwise_loss_for_classify": ("[xent, logconf, product, entropy]", "[xent, logconf, product, entropy, bt]",
                                   "  loss:", "params.loss.choices", ["'bt'", "pairwise", "not classify"]),
    "dangling_condition": ("when: {loss: product}", "when: {losss: product}", "  alpha:",
                           "params.alpha.when.losss", ["missing parameter 'losss'"]),
    "condition_value_not_a_choice": ("when: {loss: product}", "when: {loss: focal}", "  alpha:",
                                     "params.alpha.when.loss", ["'focal' is not one of the choices"]),
    "condition_on_float": ("when: {loss: product}", "when: {lr: 0.1}", "  alpha:", "params.alpha.when.lr",
                           ["lr is float"]),
    "loss_param_under_wrong_loss": ("when: {loss: product}", "when: {loss: [product, xent]}", "  alpha:",
                                    "params.alpha", ["loss 'xent'", "no parameter 'alpha'"]),
    "unconditioned_loss_param": ("alpha: {type: float, low: 0.5, high: 2.0, when: {loss: product}}",
                                 "alpha: {type: float, low: 0.5, high: 2.0}", "  alpha:", "params.alpha",
                                 ["no parameter 'alpha'"]),
    "bootstrap_beyond_ladder": ("bootstrap_steps: {type: int, low: 0, high: 2}",
                                "bootstrap_steps: {type: int, low: 0, high: 3}", "bootstrap_steps",
                                "params.bootstrap_steps", ["only 2 intermediate"]),
    "unknown_mode": ("choices: [finetune, probe, lora]", "choices: [finetune, full]", "  mode:",
                     "params.mode.choices", ["unknown training mode 'full'", "lora"]),
    "unknown_weak_label_transform": ("choices: [soft, hard]", "choices: [soft, sharpen]", "weak_label_transform",
                                     "params.weak_label_transform.choices", ["'sharpen'"]),
    "knob_out_of_valid_range": ("epochs: {type: int, low: 1,", "epochs: {type: int, low: 0,", "  epochs:",
                                "params.epochs.low", ["outside the valid range"]),
    "fixed_wrong_type": ("batch_size: {fixed: 32}", "batch_size: {fixed: 32.5}", "batch_size",
                         "params.batch_size.fixed", ["not an integer"]),
    "fixed_with_range_field": ("batch_size: {fixed: 32}", "batch_size: {fixed: 32, low: 1}", "batch_size",
                               "params.batch_size.low", ["does not apply"]),
    "default_out_of_range": ("epochs: {type: int, low: 1, high: 3}", "epochs: {type: int, low: 1, high: 3, default: 5}",
                             "  epochs:", "params.epochs.default", ["outside [1, 3]"]),
    "step_not_dividing_range": ("step: 4", "step: 5", "lora_r", "params.lora_r.step", ["multiple of step"]),
    "baseline_unknown_key": ("{loss: logconf, aux_coef: 0.5}", "{loss: logconf, aux_coef: 0.5, lrr: 1.0e-4}",
                             "lrr", "baseline[1].lrr", ["unknown parameter"]),
    "baseline_value_out_of_range": ("{loss: xent, lr: 5.0e-5}", "{loss: xent, lr: 1.0}", "{loss: xent, lr: 1.0}",
                                    "baseline[0].lr", ["outside"]),
    "baseline_inactive_param": ("{loss: xent, lr: 5.0e-5}", "{loss: xent, lr: 5.0e-5, alpha: 1.0}", "{loss: xent",
                                "baseline[0].alpha", ["inactive"]),
    "baseline_not_a_choice": ("{loss: xent, lr: 5.0e-5}", "{loss: focal}", "{loss: focal}", "baseline[0].loss",
                              ["not one of the choices"]),
    "baseline_duplicate": ("{loss: logconf, aux_coef: 0.5}", "{loss: xent, lr: 5.0e-5, epochs: 2}", "epochs: 2}",
                           "baseline[1]", ["same point as baseline[0]"]),
    "duplicate_key": ("  batch_size: {fixed: 32}", "  batch_size: {fixed: 32}\n  batch_size: {fixed: 16}",
                      "fixed: 16", "batch_size", ["duplicate key"]),
    "yaml_syntax": ("  epochs: {type: int, low: 1, high: 3}", "  epochs: type: int", "  epochs:", "invalid YAML",
                    ["mapping values are not allowed"]),
    "ladder_not_a_list": ("ladder:\n  - m@L2\n  - m@L4", "ladder: m@L2", "ladder:", "ladder", ["must be a list"]),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_malformed_space(tmp_path, case):
    old, new, needle, key, fragments = CASES[case]
    assert_error(tmp_path, edit(old, new), needle, key, *fragments)


def test_ladder_must_grow(tmp_path):
    assert_error(tmp_path, edit("weak: m@L1", "weak: m@L3"), "  - m@L2", "ladder[0]", "not larger than 'm@L3' (weak)")
    assert_error(tmp_path, edit("  - m@L4", "  - m@L1"), "  - m@L1", "ladder[1]", "appears twice")
    assert_error(tmp_path, edit("strong: m", "strong: m@L3"), "strong:", "strong", "not larger than 'm@L4'")


def test_weak_equal_to_strong_is_allowed(tmp_path):
    """Smoke runs use one tiny model for both ends; only the ladder must not repeat."""
    text = BASE.replace("weak: m@L1", "weak: tiny").replace("strong: m", "strong: tiny")
    text = text.replace("ladder:\n  - m@L2\n  - m@L4\n", "").replace("high: 2}", "high: 0}")
    space = load_space(write(tmp_path, text), "classify")
    assert space.weak == space.strong == "tiny" and space.ladder == ()


def test_empty_params(tmp_path):
    text = BASE.split("params:")[0] + "params: {}\n"
    assert_error(tmp_path, text, "params:", "params", "no parameters")


def test_missing_params_key(tmp_path):
    text = BASE.split("params:")[0]
    msg = assert_error(tmp_path, text, "task: sst2", "params", "no parameters")
    assert msg.startswith(str(tmp_path / "bad.yaml"))


def test_condition_line_is_the_when_line_in_block_style(tmp_path):
    text = edit(
        "  alpha: {type: float, low: 0.5, high: 2.0, when: {loss: product}}",
        "  alpha:\n    type: float\n    low: 0.5\n    high: 2.0\n    when:\n      lozz: product",
    )
    assert_error(tmp_path, text, "lozz", "params.alpha.when.lozz", "missing parameter")


def test_condition_cycle(tmp_path):
    text = edit("when: {mode: lora}", "when: {mode: lora, weak_label_transform: soft}")
    text = text.replace("choices: [soft, hard]}", "choices: [soft, hard], when: {lora_r: 8}}")
    msg = assert_error(tmp_path, text, "  lora_r:", "params.lora_r.when", "cycle")
    assert "weak_label_transform" in msg


def test_task_mismatch(tmp_path):
    assert_error(tmp_path, BASE, "task: sst2", "task", "not 'imdb'", task="imdb")


def test_unknown_top_level_key_lists_valid_ones(tmp_path):
    msg = assert_error(tmp_path, "prams: {}\n" + BASE, "prams", "prams", "unknown top-level key")
    assert "params" in msg and "baseline" in msg


def test_file_not_found(tmp_path):
    with pytest.raises(UserError, match=r"search space file not found: .*nope\.yaml; available in .*sst2\.yaml"):
        load_space(tmp_path / "nope.yaml", "classify")


def test_empty_and_non_mapping_files(tmp_path):
    with pytest.raises(UserError, match=r"bad\.yaml:1: search space is empty"):
        load_space(write(tmp_path, "# nothing\n"), "classify")
    with pytest.raises(UserError, match=r"bad\.yaml:1: search space must be a mapping"):
        load_space(write(tmp_path, "- lr\n- epochs\n"), "classify")


def test_unsafe_yaml_tag_is_refused(tmp_path):
    text = edit("task: sst2", "task: !!python/object/apply:os.system [echo hi]")
    assert_error(tmp_path, text, "task:", "invalid YAML")


def test_unknown_kind_is_a_programming_error(tmp_path):
    with pytest.raises(ValueError, match="unknown task kind"):
        load_space(write(tmp_path, BASE), "regression")
