"""Bad input to ``python -m w2s_ray.search`` is refused before anything costly starts.

Each case runs the real CLI in a subprocess with valid base arguments (``--preset tiny``,
storage and a sqlite tracking URI under the test's tmp dir) and changes exactly one thing.
It must exit with code 2 and print exactly one stderr line ``error: ...`` naming the fault,
with no traceback, no Ray session, no MLflow run and nothing written to the storage path.

Controls prove the base arguments, the space-file template and the fake data dir are valid
(so each failure comes from its one defect), and that the "no Ray session" and "no MLflow
run" detectors do see a session or a run when there is one.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.conftest import REPO

MINILM = "sentence-transformers/all-MiniLM-L6-v2"

# A small valid space for sst2 (no bootstrap steps, so the model chain is just weak -> strong).
SPACE_TEMPLATE = """\
task: sst2
params:
  lr:       {type: float, low: 1.0e-5, high: 5.0e-4, log: true}
  epochs:   {type: int, low: 1, high: 2}
  loss:     {type: categorical, choices: [xent, logconf]}
  aux_coef: {type: float, low: 0.1, high: 1.0, when: {loss: logconf}}
baseline:
  - {loss: xent}
"""

SST2_FILES = ("train.jsonl.gz", "dev.jsonl.gz", "test.jsonl.gz")
GOOD_ROWS = [{"sentence": f"sentence number {i} is {'good' if i % 2 else 'bad'}", "label": i % 2}
             for i in range(240)]

# Environment that would point the CLI somewhere else than the test's own dirs.
_SCRUBBED_ENV = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "W2S_STORAGE", "W2S_CACHE_DIR", "W2S_SPACES_DIR",
                 "W2S_FAULT_DIR")


# ---------------------------------------------------------------------------------------
# Helpers


@dataclass
class Dirs:
    """Per-test paths: cwd for the CLI, storage, tracking db, and ``tmp`` (TMPDIR/RAY_TMPDIR).

    ``tmp`` is a short path of its own: Ray's socket paths under it must fit in 107 bytes.
    """

    root: Path
    tmp: Path

    @property
    def cwd(self) -> Path:
        return self.root / "cwd"

    @property
    def storage(self) -> Path:
        return self.root / "runs"

    @property
    def db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.db}"

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"


def base_args(d: Dirs, **override: str | None) -> list[str]:
    """Valid base arguments; ``override`` replaces (or with None drops) an option's value."""
    opts: dict[str, str | None] = {
        "--task": "sst2",
        "--preset": "tiny",
        "--storage": str(d.storage),
        "--tracking-uri": d.tracking_uri,
    }
    for key, value in override.items():
        opts["--" + key.replace("_", "-")] = value
    argv: list[str] = []
    for key, value in opts.items():
        if value is not None:
            argv += [key, value]
    return argv


def write_space(d: Dirs, name: str, text: str) -> str:
    path = d.inputs / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def space_with(d: Dirs, old: str, new: str) -> str:
    """The template with one substring replaced (asserting it was there)."""
    assert old in SPACE_TEMPLATE, old
    return write_space(d, "space.yaml", SPACE_TEMPLATE.replace(old, new, 1))


def write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def fake_data_dir(root: Path, train: bytes | list[dict] | None, others: list[dict] | None = None) -> Path:
    """A data dir laid out like shared/data holding only sst2's files.

    ``train``: rows for train.jsonl.gz, raw bytes written as is, or None to leave it out.
    ``others``: rows for dev/test (default: valid rows with both labels).
    """
    data = root / "data"
    rows = GOOD_ROWS if others is None else others
    for name in SST2_FILES:
        path = data / "sst2" / name
        content = rows if name != "train.jsonl.gz" else train
        if content is None:
            continue
        if isinstance(content, bytes):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        else:
            write_jsonl_gz(path, content)
    return data


def free_closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env(d: Dirs, data_dir: str, model_cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env.update({
        "W2S_DATA_DIR": data_dir,
        "W2S_MODEL_CACHE": str(model_cache),
        "RAY_AUTH_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TMPDIR": str(d.tmp),
        "RAY_TMPDIR": str(d.tmp),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    })
    return env


def run_cli(argv: list[str], d: Dirs, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "w2s_ray.search", *argv], cwd=d.cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def ray_sessions(tmp: Path) -> list[Path]:
    """Ray session dirs under a temp root (Ray puts them in ``$RAY_TMPDIR/ray/session_*``)."""
    return sorted(p for p in tmp.rglob("session_*") if p.is_dir()) if tmp.exists() else []


def mlflow_run_count(tracking_uri: str) -> int:
    """Runs of every experiment (active or deleted) in a tracking store."""
    import mlflow
    from mlflow.entities import ViewType

    client = mlflow.MlflowClient(tracking_uri)
    exps = client.search_experiments(view_type=ViewType.ALL)
    if not exps:
        return 0
    return len(client.search_runs([e.experiment_id for e in exps], run_view_type=ViewType.ALL, max_results=1000))


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if not p.is_dir()) if path.is_dir() else []


# ---------------------------------------------------------------------------------------
# Cases: each returns (argv, substrings the error line must contain)

Build = Callable[[Dirs], tuple[list[str], list[str]]]


@dataclass(frozen=True)
class Case:
    id: str
    build: Build


def _case_unknown_task(d: Dirs):
    return base_args(d, task="sst3"), ["unknown task", "'sst3'"]


def _case_unknown_preset(d: Dirs):
    return base_args(d, preset="huge"), ["unknown preset", "'huge'"]


def _case_unknown_loss(d: Dirs):
    space = space_with(d, "choices: [xent, logconf]", "choices: [xent, logconf, focal_nope]")
    return base_args(d, space=space), ["space.yaml", "params.loss", "focal_nope"]


def _case_unknown_model_dir(d: Dirs):
    return base_args(d, weak="./no/such/dir"), ["no/such/dir"]


def _case_too_many_layers(d: Dirs):
    return base_args(d, weak="tiny-bert@L9"), ["tiny-bert@L9", "9 layers"]


def _case_space_unknown_top_key(d: Dirs):
    space = space_with(d, "task: sst2\n", "task: sst2\noptimizer: adamw\n")
    return base_args(d, space=space), ["space.yaml:2", "optimizer", "unknown top-level key"]


def _case_space_unknown_param(d: Dirs):
    space = space_with(d, "baseline:", "  momentum: {type: float, low: 0.1, high: 0.9}\nbaseline:")
    return base_args(d, space=space), ["space.yaml:7", "params.momentum", "unknown parameter"]


def _case_space_inverted_range(d: Dirs):
    space = space_with(d, "{type: int, low: 1, high: 2}", "{type: int, low: 3, high: 1}")
    return base_args(d, space=space), ["space.yaml:4", "params.epochs", "low (3) > high (1)"]


def _case_space_log_range_zero(d: Dirs):
    space = space_with(d, "low: 1.0e-5, high: 5.0e-4, log: true", "low: 0.0, high: 5.0e-4, log: true")
    return base_args(d, space=space), ["space.yaml:3", "params.lr", "log"]


def _case_space_wrong_type(d: Dirs):
    space = space_with(d, "low: 1.0e-5, high: 5.0e-4", 'low: "abc", high: 5.0e-4')
    return base_args(d, space=space), ["space.yaml:3", "params.lr", "'abc'"]


def _case_space_dangling_condition(d: Dirs):
    space = space_with(d, "when: {loss: logconf}", "when: {mode: lora}")
    return base_args(d, space=space), ["space.yaml:6", "params.aux_coef.when.mode", "missing parameter 'mode'"]


def _case_space_missing_file(d: Dirs):
    missing = str(d.inputs / "no_such_space.yaml")
    return base_args(d, space=missing), ["no_such_space.yaml", "not found"]


def _case_data_dir_missing(d: Dirs):
    return base_args(d, data_dir=str(d.root / "nope")), [str(d.root / "nope"), "does not exist"]


def _case_data_file_missing(d: Dirs):
    data = fake_data_dir(d.inputs, train=None)
    return base_args(d, data_dir=str(data)), ["missing data file", "sst2/train.jsonl.gz"]


def _case_data_file_empty(d: Dirs):
    data = fake_data_dir(d.inputs, train=gzip.compress(b""))
    return base_args(d, data_dir=str(data)), ["sst2/train.jsonl.gz", "empty"]


def _case_data_file_corrupt_gzip(d: Dirs):
    data = fake_data_dir(d.inputs, train=b"this is not gzip at all\n" * 8)
    return base_args(d, data_dir=str(data)), ["sst2/train.jsonl.gz", "gzip"]


def _case_data_missing_column(d: Dirs):
    rows = [{"sentence": r["sentence"], "polarity": r["label"]} for r in GOOD_ROWS]
    data = fake_data_dir(d.inputs, train=rows)
    return base_args(d, data_dir=str(data)), ["missing required column 'label'", "sst2/train.jsonl.gz"]


def _case_data_single_class(d: Dirs):
    ones = [{**r, "label": 1} for r in GOOD_ROWS]
    data = fake_data_dir(d.inputs, train=ones, others=ones)
    return base_args(d, data_dir=str(data)), ["single class", "sst2"]


def _case_tracking_unreachable(d: Dirs):
    uri = f"http://127.0.0.1:{free_closed_port()}"
    return base_args(d, tracking_uri=uri), [uri, "unreachable"]


def _case_storage_unwritable(d: Dirs):
    afile = d.root / "afile"
    afile.write_text("a regular file, so nothing can be created below it\n")
    target = afile / "x"
    return base_args(d, storage=str(target)), [str(target), "not writable"]


def _case_num_samples_zero(d: Dirs):
    return base_args(d, num_samples="0"), ["--num-samples", "0"]


def _case_strong_smaller_than_weak(d: Dirs):
    # Default sst2 space: its bootstrap ladder is in the chain too (the tiny preset's tiny-bert
    # rungs); the user's fault is still the pair, so the message must name the strong model.
    argv = base_args(d, weak=MINILM, strong=f"{MINILM}@L1")
    return argv, ["smaller", f"{MINILM}@L1"]


def _case_strong_smaller_than_weak_no_ladder(d: Dirs):
    space = write_space(d, "space.yaml", SPACE_TEMPLATE)
    argv = base_args(d, weak=MINILM, strong=f"{MINILM}@L1", space=space)
    return argv, ["smaller", f"{MINILM}@L1", MINILM]


def _case_gap_z_not_finite(d: Dirs):
    # argparse takes "nan" as a float; it must not reach the first PGR after trainings have run
    return base_args(d, gap_z="nan"), ["--gap-z", "nan"]


def _case_resume_missing(d: Dirs):
    return base_args(d) + ["--resume", "--name", "never-ran"], ["--resume", "'never-ran'"]


CASES = [
    Case("unknown-task", _case_unknown_task),
    Case("unknown-preset", _case_unknown_preset),
    Case("unknown-loss-in-space", _case_unknown_loss),
    Case("model-dir-missing", _case_unknown_model_dir),
    Case("model-too-many-layers", _case_too_many_layers),
    Case("space-unknown-top-key", _case_space_unknown_top_key),
    Case("space-unknown-param", _case_space_unknown_param),
    Case("space-inverted-range", _case_space_inverted_range),
    Case("space-log-range-zero", _case_space_log_range_zero),
    Case("space-wrong-type", _case_space_wrong_type),
    Case("space-dangling-condition", _case_space_dangling_condition),
    Case("space-file-missing", _case_space_missing_file),
    Case("data-dir-missing", _case_data_dir_missing),
    Case("data-file-missing", _case_data_file_missing),
    Case("data-file-empty", _case_data_file_empty),
    Case("data-file-corrupt-gzip", _case_data_file_corrupt_gzip),
    Case("data-missing-column", _case_data_missing_column),
    Case("data-single-class", _case_data_single_class),
    Case("tracking-uri-unreachable", _case_tracking_unreachable),
    Case("storage-unwritable", _case_storage_unwritable),
    Case("num-samples-zero", _case_num_samples_zero),
    Case("ladder-strong-smaller-than-weak", _case_strong_smaller_than_weak),
    Case("ladder-strong-smaller-than-weak-no-bootstrap", _case_strong_smaller_than_weak_no_ladder),
    Case("resume-missing-search", _case_resume_missing),
    Case("gap-z-not-finite", _case_gap_z_not_finite),
]


# ---------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def shared_model_cache(tmp_path_factory) -> Path:
    """One generated tiny-bert for all cases (kept out of the user's home cache)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture
def dirs(tmp_path) -> Iterator[Dirs]:
    short_tmp = Path(tempfile.mkdtemp(prefix="w2sbad-", dir="/tmp" if os.path.isdir("/tmp") else None))
    d = Dirs(tmp_path, short_tmp)
    for path in (d.cwd, d.inputs):
        path.mkdir()
    yield d
    shutil.rmtree(short_tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# The bad-input cases


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_before_anything_starts(case: Case, dirs: Dirs, data_dir: str,
                                                    shared_model_cache: Path) -> None:
    argv, expected = case.build(dirs)
    proc = run_cli(argv, dirs, cli_env(dirs, data_dir, shared_model_cache))
    shown = f"argv={argv}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    assert "Traceback" not in proc.stderr + proc.stdout, shown
    assert proc.returncode == 2, shown
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, shown
    line = lines[0]
    print(line)  # shown by `pytest -rP`
    assert line.startswith("error: "), shown
    for part in expected:
        assert part in line, f"{part!r} not named in the error line\n{shown}"

    assert ray_sessions(dirs.tmp) == [], f"a Ray session was started\n{shown}"
    if dirs.db.exists():
        assert mlflow_run_count(dirs.tracking_uri) == 0, f"an MLflow run was created\n{shown}"
    assert files_under(dirs.storage) == [], f"files written under the storage path\n{shown}"
    assert files_under(dirs.cwd) == [], f"files written in the working dir\n{shown}"


# ---------------------------------------------------------------------------------------
# Controls: the one defect is what fails, and the detectors can see what they look for


def test_base_args_plan_without_error(dirs: Dirs, data_dir: str, shared_model_cache: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The unmodified base arguments (default and template space) pass all validation."""
    import ray

    from w2s_ray.search.cli import build_parser
    from w2s_ray.search.driver import plan_search

    monkeypatch.setenv("W2S_DATA_DIR", data_dir)
    monkeypatch.setenv("W2S_MODEL_CACHE", str(shared_model_cache))
    for key in _SCRUBBED_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(dirs.cwd)
    template = write_space(dirs, "space.yaml", SPACE_TEMPLATE)
    for argv in (base_args(dirs), base_args(dirs, space=template)):
        plan = plan_search(build_parser().parse_args(argv))
        assert plan.task == "sst2" and plan.preset.name == "tiny"
        assert plan.data is not None and len(plan.data.splits["test"].ids) == plan.preset.sizes.test
    assert not ray.is_initialized()
    assert not dirs.db.exists()
    assert files_under(dirs.storage) == []


def test_fake_data_dir_without_defect_loads(dirs: Dirs) -> None:
    from w2s_ray.tasks import load_task

    data = fake_data_dir(dirs.inputs, train=GOOD_ROWS)
    ds = load_task("sst2", data_dir=str(data))
    assert len(ds) == len(GOOD_ROWS) * len(SST2_FILES)
    assert set(ds["label"]) == {0, 1}


def test_mlflow_run_count_sees_a_run(dirs: Dirs) -> None:
    import mlflow

    client = mlflow.MlflowClient(dirs.tracking_uri)
    exp = client.create_experiment("probe", artifact_location=(dirs.root / "art").as_uri())
    client.create_run(exp)
    assert mlflow_run_count(dirs.tracking_uri) == 1


@pytest.mark.ray
def test_ray_session_detector_sees_a_session(dirs: Dirs, data_dir: str, shared_model_cache: Path) -> None:
    """With the same env, starting Ray does create ``<tmp>/ray/session_*`` (so the check can fail)."""
    env = cli_env(dirs, data_dir, shared_model_cache)
    code = "import ray; ray.init(num_cpus=1, include_dashboard=False); ray.shutdown()"
    proc = subprocess.run([sys.executable, "-c", code], cwd=dirs.cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert ray_sessions(dirs.tmp), f"no session dir under {dirs.tmp}: {sorted(dirs.tmp.rglob('*'))[:20]}"
