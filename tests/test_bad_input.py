"""Bad input to ``run``, ``search`` and ``report`` is refused before anything costly starts.

The cases live in ``tests/bad_inputs.yaml`` (one entry per case; see its header). Each runs the
CLI's ``main(argv)`` in-process (a few in a subprocess) with valid base arguments changed in
one way, training stubbed out, and must exit 2 with exactly one stderr line ``error: ...``
naming the fault, with no traceback, no Ray session, no mlflow.db and nothing written to the
storage, cache, output or plot dirs.

Controls prove the base arguments, the space template, the fake data dir and the fake search
are valid (so each failure comes from its one defect), and that the read-only dir is read-only.
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
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

CASES_FILE = Path(__file__).with_name("bad_inputs.yaml")
SPEC = yaml.safe_load(CASES_FILE.read_text())
CASES: list[dict[str, Any]] = SPEC["cases"]
BASE: dict[str, list[str]] = SPEC["base"]

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

# Environment that would point a CLI somewhere else than the case's own dirs.
SCRUBBED_ENV = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "W2S_STORAGE", "W2S_CACHE_DIR", "W2S_SPACES_DIR",
                "W2S_FAULT_DIR", "HF_ENDPOINT")

_ENTRY = {"run": "w2s_ray.run", "search": "w2s_ray.search", "report": "w2s_ray.report"}


class TrainingStarted(BaseException):
    """Raised by the stubs where training (or Ray) would start: validation let the input through."""


# ---------------------------------------------------------------------------------------
# Inputs


def write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def fake_data_dir(root: Path, defect: str) -> Path:
    """A data dir laid out like shared/data holding only sst2's files, with one ``defect``."""
    data = root / "data"
    others = [{**r, "label": 1} for r in GOOD_ROWS] if defect == "single-class" else GOOD_ROWS
    train: bytes | list[dict] | None = {
        "good": GOOD_ROWS,
        "train-missing": None,
        "train-empty": gzip.compress(b""),
        "train-corrupt-gzip": b"this is not gzip at all\n" * 8,
        "missing-column": [{"sentence": r["sentence"], "polarity": r["label"]} for r in GOOD_ROWS],
        "single-class": others,
    }[defect]
    for name in SST2_FILES:
        path = data / "sst2" / name
        content = others if name != "train.jsonl.gz" else train
        if content is None:
            continue
        if isinstance(content, bytes):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        else:
            write_jsonl_gz(path, content)
    return data


def write_inputs(root: Path, files: dict[str, Any]) -> Path:
    """Your-own-data inputs under ``<root>/inputs``: text as given, or ``{rows: N, sentiment: [...]}``
    for N JSONL rows with ``text`` and the sentiment values in turn."""
    inputs = root / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if isinstance(content, dict):
            values = content["sentiment"]
            content = "".join(json.dumps({"text": f"row {i} of my data", "sentiment": values[i % len(values)]}) + "\n"
                              for i in range(content["rows"]))
        (inputs / name).write_text(content)
    return inputs


def fake_search_summary() -> dict[str, Any]:
    entry = {"weak_acc": 0.7, "ceiling_acc": 0.8, "student_acc": 0.75, "pgr": 0.5}
    return {"name": "s", "task": "sst2",
            "references": {"weak": {"model": "tiny-bert"}, "ceiling": {"model": "tiny-bert"},
                           "bootstrap": [{"model": "tiny-bert", "key": "k", "test_acc": 0.72}]},
            "rows": {"baseline": {"val": entry, "test": entry}, "best": {"val": entry, "test": entry}}}


def fake_trials():
    import pandas as pd

    return pd.DataFrame({"trial_id": ["a", "b", "c"], "config/loss": ["xent", "logconf", "xent"],
                         "objective": [0.1, 0.4, 0.2], "val_pgr": [0.1, 0.4, 0.2]})


def _walk(obj: Any, dotted: str) -> tuple[Any, str | int]:
    *parents, last = dotted.split(".")
    for key in parents:
        obj = obj[int(key)] if isinstance(obj, list) else obj[key]
    return obj, int(last) if isinstance(obj, list) else last


def fake_search(root: Path, change: dict[str, Any] | None = None, fill: dict[str, str] | None = None) -> Path:
    """A finished search (``<root>/w2s/search.json`` and ``trials.parquet``), with ``change`` applied."""
    change = change or {}
    out = root / "w2s"
    out.mkdir(parents=True)
    summary = fake_search_summary()
    for dotted in change.get("drop", []):
        parent, key = _walk(summary, dotted)
        del parent[key]
    for dotted, value in change.get("set", {}).items():
        parent, key = _walk(summary, dotted)
        parent[key] = fill_in(value, fill or {})
    if "json" in change:
        (out / "search.json").write_text(change["json"])
    elif "json_bytes" in change:
        (out / "search.json").write_bytes(change["json_bytes"].encode("latin-1"))
    else:
        (out / "search.json").write_text(json.dumps(summary))
    trials = fake_trials().drop(columns=change.get("drop_columns", []))
    if "trials_rows" in change:
        trials = trials.iloc[: change["trials_rows"]]
    if "trials" in change:
        (out / "trials.parquet").write_text(change["trials"])
    else:
        trials.to_parquet(out / "trials.parquet")
    if "remove" in change:
        (out / change["remove"]).unlink()
    return root


def write_space(root: Path, old: str, new: str) -> Path:
    """The template with one substring replaced (asserting it was there); ``old == ""``: unchanged."""
    assert old in SPACE_TEMPLATE, old
    path = root / "inputs" / "space.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SPACE_TEMPLATE.replace(old, new, 1) if old else SPACE_TEMPLATE)
    return path


def free_closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill_in(value: Any, subs: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, sub in subs.items():
            value = value.replace("{" + key + "}", sub)
        return value
    if isinstance(value, dict):
        return {k: fill_in(v, subs) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_in(v, subs) for v in value]
    return value


def drop_options(argv: list[str], drop: list[str]) -> list[str]:
    """``argv`` without each ``--opt`` in ``drop`` (and its value), or without a bare positional."""
    out, skip = [], False
    for i, item in enumerate(argv):
        if skip:
            skip = False
            continue
        if item in drop:
            skip = item.startswith("--") and i + 1 < len(argv) and not argv[i + 1].startswith("--")
            continue
        out.append(item)
    return out


# ---------------------------------------------------------------------------------------
# Per-case dirs


@dataclass
class Dirs:
    """Per-case paths. ``tmp`` is TMPDIR/RAY_TMPDIR, a short path of its own (Ray's sockets fit)."""

    root: Path
    tmp: Path
    ro: Path | None
    subs: dict[str, str] = field(default_factory=dict)

    @property
    def cwd(self) -> Path:
        return self.root / "cwd"

    @property
    def db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def watched(self) -> dict[str, Path]:
        """Dirs that must hold no file after a refused input."""
        dirs = {"storage": self.root / "runs", "cache": self.root / "cache", "out": self.root / "out",
                "cwd": self.cwd, "plots": self.root / "search" / "w2s" / "plots"}
        if self.ro is not None:
            dirs["read-only plots"] = self.ro / "search" / "w2s" / "plots"
        return dirs


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if not p.is_dir()) if path.is_dir() else []


def ray_sessions(tmp: Path) -> list[Path]:
    """Ray session dirs under a temp root (Ray puts them in ``$RAY_TMPDIR/ray/session_*``)."""
    return sorted(p for p in tmp.rglob("session_*") if p.is_dir()) if tmp.exists() else []


def _probe_read_only(path: Path) -> bool:
    try:
        (path / ".probe").write_text("x")
    except OSError:
        return True
    (path / ".probe").unlink()
    return False


@pytest.fixture(scope="module")
def read_only_dir(tmp_path_factory) -> Iterator[Path | None]:
    """A read-only dir holding a finished search (``search/``): chmod, or for root a read-only bind mount.

    None when neither works here (the cases needing it are skipped).
    """
    path = tmp_path_factory.mktemp("read-only")
    fake_search(path / "search")
    mounted = False
    if os.geteuid() == 0:
        ok = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode == 0
        if ok:
            mounted = True
            subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True)
    else:
        for p in [path, *path.rglob("*")]:
            if p.is_dir():
                p.chmod(0o555)
    try:
        yield path if _probe_read_only(path) else None
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], capture_output=True)
        for p in [path, *path.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)


@pytest.fixture(scope="module")
def shared_model_cache(tmp_path_factory) -> Path:
    """One generated tiny-bert for all cases (kept out of the user's home cache)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture
def dirs(tmp_path: Path, read_only_dir: Path | None, data_dir: str, shared_model_cache: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Dirs]:
    """The case's dirs, environment (private tmp, offline hub, real data) and cwd."""
    short_tmp = Path(tempfile.mkdtemp(prefix="w2sbad-", dir="/tmp" if os.path.isdir("/tmp") else None))
    d = Dirs(tmp_path, short_tmp, read_only_dir)
    d.cwd.mkdir()
    (tmp_path / "afile").write_text("a regular file, so nothing can be created below it\n")
    fake_search(tmp_path / "search")
    d.subs = {"root": str(tmp_path), "data": data_dir, "file": str(tmp_path / "afile"),
              "ro": str(read_only_dir) if read_only_dir else "{ro}", "cache": str(tmp_path / "cache"),
              "storage": str(tmp_path / "runs"), "out": str(tmp_path / "out"), "db": str(d.db),
              "search": str(tmp_path / "search"), "port": str(free_closed_port())}
    for key in SCRUBBED_ENV:
        monkeypatch.delenv(key, raising=False)
    for key, value in {"W2S_DATA_DIR": data_dir, "W2S_MODEL_CACHE": str(shared_model_cache),
                       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_AUTH_MODE": "disabled",
                       "TOKENIZERS_PARALLELISM": "false", "TMPDIR": str(short_tmp),
                       "RAY_TMPDIR": str(short_tmp)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(tempfile, "tempdir", str(short_tmp))
    monkeypatch.chdir(d.cwd)
    yield d
    shutil.rmtree(short_tmp, ignore_errors=True)


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where training or Ray would start, raise ``TrainingStarted`` instead."""
    import w2s_ray.run
    import w2s_ray.search.driver

    def started(*_a: Any, **_k: Any) -> None:
        raise TrainingStarted

    monkeypatch.setattr(w2s_ray.run, "run_experiment", started)
    monkeypatch.setattr(w2s_ray.search.driver, "run_search", started)
    monkeypatch.setattr(w2s_ray.search.driver, "init_ray", started)


# ---------------------------------------------------------------------------------------
# Running a CLI


@dataclass
class Result:
    rc: int | None
    stdout: str
    stderr: str
    seconds: float


def main_of(cli: str):
    if cli == "run":
        from w2s_ray.run import main
    elif cli == "search":
        from w2s_ray.search.__main__ import main
    else:
        from w2s_ray.report import main
    return main


def run_in_process(cli: str, argv: list[str], capfd: pytest.CaptureFixture[str]) -> Result:
    main = main_of(cli)
    capfd.readouterr()
    start = time.monotonic()
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 2
    except TrainingStarted:
        out = capfd.readouterr()
        pytest.fail(f"training started: the input passed validation\nargv={argv}\nstderr:\n{out.err}")
    except Exception:  # noqa: BLE001 - an escaped exception is the bug this suite looks for
        import traceback

        out = capfd.readouterr()
        pytest.fail(f"Traceback escaped main()\nargv={argv}\n{traceback.format_exc()}\nstderr:\n{out.err}")
    seconds = time.monotonic() - start
    out = capfd.readouterr()
    return Result(rc, out.out, out.err, seconds)


def run_subprocess(cli: str, argv: list[str], cwd: Path, timeout: float) -> Result:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", _ENTRY[cli], *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


def case_argv(case: dict[str, Any], d: Dirs) -> list[str]:
    setup = case.get("setup", {})
    if "space" in setup:
        d.subs["space"] = str(write_space(d.root, *setup["space"]))
    if "data" in setup:
        d.subs["fake_data"] = str(fake_data_dir(d.root / "inputs", setup["data"]))
    if "files" in setup:
        d.subs["inputs"] = str(write_inputs(d.root, setup["files"]))
    if "search" in setup:
        shutil.rmtree(d.root / "search")
        fake_search(d.root / "search", setup["search"], d.subs)
    base = drop_options(BASE[case["cli"]], case.get("drop", []))
    return fill_in(base + list(case.get("args", [])), d.subs)


# ---------------------------------------------------------------------------------------
# The bad-input cases


def test_case_ids_are_unique_and_cover_every_cli() -> None:
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert {c["cli"] for c in CASES} == set(BASE)
    assert len(CASES) >= 120


@pytest.mark.timeout(180)
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_is_refused_before_anything_starts(case: dict[str, Any], dirs: Dirs, stubs: None,
                                                    capfd: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    if "{ro}" in json.dumps(case) and dirs.ro is None:
        # Justified skip: a root user without mount rights cannot be denied writes (chmod does not bind root)
        pytest.skip("no read-only dir can be made here")
    argv = case_argv(case, dirs)
    for key, value in fill_in(case.get("env", {}), dirs.subs).items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, str(value))
    within = float(case.get("within", 60))
    if case.get("subprocess"):
        res = run_subprocess(case["cli"], argv, dirs.cwd, timeout=within + 60)
    else:
        res = run_in_process(case["cli"], argv, capfd)
    shown = f"argv={argv}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"

    assert "Traceback" not in res.stderr + res.stdout, shown
    assert res.rc == 2, shown
    lines = res.stderr.splitlines()
    assert len(lines) == 1, shown
    line = lines[0]
    print(line)  # shown by `pytest -rP`
    assert line.startswith("error: "), shown
    for part in fill_in(list(case["expect"]) if isinstance(case["expect"], list) else [case["expect"]], dirs.subs):
        assert part in line, f"{part!r} not named in the error line\n{shown}"
    assert res.seconds < within, f"refused after {res.seconds:.1f}s (bound {within:g}s)\n{shown}"

    assert not ray.is_initialized(), f"Ray was started\n{shown}"
    assert ray_sessions(dirs.tmp) == [], f"a Ray session was started\n{shown}"
    assert not dirs.db.exists(), f"an MLflow store was created\n{shown}"
    for what, path in dirs.watched.items():
        assert files_under(path) == [], f"files written under the {what} dir\n{shown}"


# ---------------------------------------------------------------------------------------
# Controls: the one defect is what fails, and the detectors can see what they look for


def test_run_base_args_reach_training(dirs: Dirs, capfd: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's base arguments pass every check and get as far as training."""
    import w2s_ray.run

    reached: list[Any] = []

    def fake_run(spec, cache, data=None):
        reached.append(spec)
        raise TrainingStarted

    monkeypatch.setattr(w2s_ray.run, "run_experiment", fake_run)
    argv = fill_in(BASE["run"] + ["--loss", "logconf", "--aux-coef", "0.5", "--mode", "lora", "--lora-r", "4",
                                  "--markdown", "{out}/t.md", "--seed", "0", "1"], dirs.subs)
    with pytest.raises(TrainingStarted):
        w2s_ray.run.main(argv)
    assert reached and reached[0].student_cfg.loss_params == {"aux_coef": 0.5}
    assert files_under(dirs.root / "out") == []


def test_search_base_args_plan_without_error(dirs: Dirs) -> None:
    """The unmodified search base arguments (default and template space) pass all validation."""
    import ray

    from w2s_ray.search.cli import parse_settings
    from w2s_ray.search.driver import plan_search

    template = write_space(dirs.root, "", "")
    for argv in (BASE["search"], BASE["search"] + ["--space", str(template), "--name", "ok-name_1.2"]):
        plan = plan_search(parse_settings(fill_in(argv, dirs.subs)))
        assert plan.task == "sst2" and plan.preset.name == "tiny"
        assert plan.data is not None and len(plan.data.splits["test"].ids) == plan.preset.sizes.test
    assert not ray.is_initialized()
    assert not dirs.db.exists()
    assert files_under(dirs.root / "runs") == []


def test_report_base_args_write_plots_and_create_no_store(dirs: Dirs, capfd: pytest.CaptureFixture[str]) -> None:
    """No tracking URI given or recorded and no ./mlflow.db: plots are written, no store is created."""
    from w2s_ray.report import main

    assert main(fill_in(BASE["report"], dirs.subs)) == 0
    out = capfd.readouterr().out
    assert "plots not logged" in out
    plots = sorted(p.name for p in files_under(dirs.root / "search" / "w2s" / "plots"))
    assert plots == ["accuracy_vs_size.png", "best_so_far.png", "pgr_per_method.png"]
    assert not (dirs.cwd / "mlflow.db").exists() and not dirs.db.exists()


def test_report_plots_dir_moves_plots_off_a_read_only_search(dirs: Dirs) -> None:
    from w2s_ray.report import main

    if dirs.ro is None:  # Justified skip: as above, no read-only dir exists for a root user without mount rights
        pytest.skip("no read-only dir can be made here")
    assert main([str(dirs.ro / "search"), "--plots-dir", str(dirs.root / "plots"), "--no-mlflow"]) == 0
    assert len(files_under(dirs.root / "plots")) == 3


def test_fake_data_dir_without_defect_loads(tmp_path: Path) -> None:
    from w2s_ray.tasks import load_task

    data = fake_data_dir(tmp_path, "good")
    ds = load_task("sst2", data_dir=str(data))
    assert len(ds) == len(GOOD_ROWS) * len(SST2_FILES)
    assert set(ds["label"]) == {0, 1}


def test_read_only_dir_is_read_only(read_only_dir: Path | None) -> None:
    if read_only_dir is None:  # Justified skip: as above
        pytest.skip("no read-only dir can be made here")
    assert _probe_read_only(read_only_dir)
    assert _probe_read_only(read_only_dir / "search" / "w2s")


def test_plain_postgresql_uri_uses_the_installed_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from w2s_ray.tracking.uri import check_tracking_uri, resolve_tracking_uri, with_driver

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        assert with_driver("postgresql://u@h:5432/db") == "postgresql+psycopg2://u@h:5432/db"
    assert with_driver("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert with_driver("sqlite:///x.db") == "sqlite:///x.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = resolve_tracking_uri("postgresql://postgres@127.0.0.1:5432/test", Path.cwd())
    try:
        check_tracking_uri(uri)
    except Exception as exc:  # noqa: BLE001
        if "unreachable" in str(exc):
            if os.environ.get("CI") == "true":
                pytest.fail(f"no PostgreSQL here: {exc} (CI=true requires it)")
            # Justified skip: only outside CI, as in tests/mlflow_fixtures.py, and it says why
            pytest.skip(f"no PostgreSQL here: {exc}")
        raise


@pytest.mark.ray
def test_ray_session_detector_sees_a_session(dirs: Dirs) -> None:
    """With the same env, starting Ray does create ``<tmp>/ray/session_*`` (so the check can fail)."""
    env = dict(os.environ)
    code = "import ray; ray.init(num_cpus=1, include_dashboard=False); ray.shutdown()"
    proc = subprocess.run([sys.executable, "-c", code], cwd=dirs.cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert ray_sessions(dirs.tmp), f"no session dir under {dirs.tmp}: {sorted(dirs.tmp.rglob('*'))[:20]}"
