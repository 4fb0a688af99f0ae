"""MLflow tracking: URI checks, the buffered client, and a real Tune search against real servers."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

# The server fixtures (mlflow_server, mlflow_sqlite_server, ...) come from tests/mlflow_fixtures.py
# via tests/conftest.py.
from tests.mlflow_fixtures import (
    MlflowServer,
    ToggleProxy,
    free_port,
    start_mlflow_server,
    stop_process_group,
    wait_healthy,
)
from w2s_ray.errors import UserError
from w2s_ray.tracking import (
    BufferedClient,
    SearchTracker,
    artifact_location_for,
    check_tracking_uri,
    default_tracking_uri,
    resolve_tracking_uri,
    search_key,
)
from w2s_ray.tracking.values import split_metrics, to_params

REPO = Path(__file__).resolve().parents[1]

N_TRIALS = 3
N_EPOCHS = 3


# ----- URIs -----------------------------------------------------------------------------------
def test_default_uri_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = default_tracking_uri(tmp_path)
    assert default == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_tracking_uri(None, tmp_path) == default
    assert artifact_location_for(default, tmp_path) == (tmp_path.resolve() / "mlartifacts").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env-host:5000")
    assert resolve_tracking_uri(None, tmp_path) == "http://env-host:5000"
    assert resolve_tracking_uri("http://cli-host:5000", tmp_path) == "http://cli-host:5000"
    assert artifact_location_for("http://cli-host:5000", tmp_path) is None  # the server serves artifacts
    db = "postgresql+psycopg2://u@h/db"
    assert artifact_location_for(db, "s3://bucket/runs/") == "s3://bucket/runs/mlartifacts"
    assert artifact_location_for(db, tmp_path) == (tmp_path.resolve() / "mlartifacts").as_uri()


def test_unreachable_http_server_is_a_user_error() -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(UserError, match=r"MLflow tracking server at http://127\.0\.0\.1:\d+ is unreachable: "):
        check_tracking_uri(uri, timeout_s=2)


def test_unreachable_postgres_and_bad_paths_are_user_errors(tmp_path: Path) -> None:
    unreachable = r"MLflow tracking database at postgresql\+psycopg2://postgres:\*\*\*@.* is unreachable"
    with pytest.raises(UserError, match=unreachable):
        check_tracking_uri(f"postgresql+psycopg2://postgres:secret@127.0.0.1:{free_port()}/nope", timeout_s=2)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(UserError, match="not writable"):
        check_tracking_uri(f"sqlite:///{blocker}/sub/mlflow.db")
    with pytest.raises(UserError, match=r"unsupported MLflow tracking URI scheme 'ftp'.*available: http"):
        check_tracking_uri("ftp://host/x")
    check_tracking_uri(default_tracking_uri(tmp_path / "not_yet_created"))  # creatable: fine


def test_results_become_safe_metrics_params_and_tags() -> None:
    np = pytest.importorskip("numpy")
    result = {"val_pgr": float("nan"), "train_loss": np.float32(0.5), "pgr_defined": False, "date": "today",
              "config": {"lr": 0.1}, "nested": {"acc": 1}, "bad key!": 2}
    metrics, tags = split_metrics(result)
    assert metrics == {"train_loss": 0.5, "pgr_defined": 0.0, "nested/acc": 1.0, "bad key_": 2.0}
    assert tags == {"w2s.nonfinite.val_pgr": "nan"}
    assert to_params({"loss": {"name": "logconf", "coef": 0.5}, "x": "y" * 7000}) == {
        "loss/name": "logconf", "loss/coef": "0.5", "x": "y" * 6000,
    }


# ----- buffered client --------------------------------------------------------------------------
def _experiment(server_uri: str) -> str:
    from mlflow import MlflowClient

    return MlflowClient(server_uri).create_experiment(f"buf-{uuid.uuid4().hex[:8]}")


def test_buffered_client_survives_a_dead_server(tmp_path: Path) -> None:
    unlogged = tmp_path / "storage" / "mlflow_unlogged.json"
    client = BufferedClient(f"http://127.0.0.1:{free_port()}", unlogged, min_backoff_s=0.05)
    run = client.ensure_run("1", {"w2s.trial_id": "t1"})
    assert run.startswith("pending-run:")
    assert client.log_batch(run, {"a": 1.0, "b": 2.0}, step=1, params={"p": "1"}) is False
    assert client.log_artifact(run, tmp_path) is False
    assert client.set_status(run, "FINISHED") is False
    report = client.flush(timeout_s=0.2)
    assert not report.ok
    assert report.pending == {"runs": 1, "metrics": 2, "params": 1, "tags": 0, "artifacts": 1, "statuses": 1}
    assert "not yet logged" in report.summary() and str(unlogged) in report.summary()
    doc = json.loads(unlogged.read_text())
    assert doc["pending_counts"] == report.pending
    assert [op["op"] for op in doc["pending"]] == ["ensure_run", "log_batch", "log_artifact", "set_status"]


@pytest.mark.mlflow_server
def test_buffered_client_flushes_after_the_server_returns(tmp_path: Path, mlflow_sqlite_server: MlflowServer) -> None:
    from mlflow import MlflowClient

    port = int(mlflow_sqlite_server.uri.rsplit(":", 1)[1])
    proxy = ToggleProxy(port)
    unlogged = tmp_path / "mlflow_unlogged.json"
    try:
        exp = _experiment(mlflow_sqlite_server.uri)
        client = BufferedClient(proxy.uri, unlogged, min_backoff_s=0.05)
        live = client.ensure_run(exp, {"w2s.trial_id": "live"})
        assert not live.startswith("pending-run:")
        proxy.down()
        assert client.log_batch(live, {"loss": 1.0}, step=1) is False
        pending = client.ensure_run(exp, {"w2s.trial_id": "late"})  # created while down
        client.log_batch(pending, {"loss": 2.0}, step=1, tags={"k": "v"})
        (tmp_path / "ckpt").mkdir()
        (tmp_path / "ckpt" / "w.bin").write_bytes(b"123")
        client.log_artifact(pending, tmp_path / "ckpt", "checkpoints/c1")
        report = client.flush(timeout_s=0.2)
        assert report.pending["metrics"] == 2 and report.pending["runs"] == 1 and unlogged.exists()

        # A new driver process would start a fresh client: it replays the file.
        proxy.up()
        BufferedClient.forget_shared()
        replay = BufferedClient(proxy.uri, unlogged, min_backoff_s=0.05)
        assert replay.report().pending == report.pending
        assert replay.flush(timeout_s=30).ok
        assert not unlogged.exists()
    finally:
        proxy.close()
    direct = MlflowClient(mlflow_sqlite_server.uri)
    runs = {r.data.tags["w2s.trial_id"]: r for r in direct.search_runs([exp])}
    assert sorted(runs) == ["late", "live"]
    assert [m.value for m in direct.get_metric_history(runs["live"].info.run_id, "loss")] == [1.0]
    late = runs["late"].info.run_id
    assert [m.value for m in direct.get_metric_history(late, "loss")] == [2.0]
    assert runs["late"].data.tags["k"] == "v"
    assert [f.path for f in direct.list_artifacts(late, "checkpoints/c1")] == ["checkpoints/c1/w.bin"]


# ----- a real Tune search -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_local():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def _make_trainable():
    """A toy trainable (nested, so Ray pickles it by value): N_EPOCHS epochs with checkpoints;
    config["fail_once_dir"] makes trial i == 1 raise once, at epoch 2."""
    n_epochs = N_EPOCHS

    def trainable(config):
        import math as _math
        import os as _os
        import tempfile as _tempfile

        from ray import tune as _tune

        start = 1
        ckpt = _tune.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as d:
                start = int(open(_os.path.join(d, "epoch")).read()) + 1
        flag = _os.path.join(config["fail_once_dir"], f"failed_{config['i']}")
        for epoch in range(start, n_epochs + 1):
            if config["i"] == 1 and epoch == 2 and not _os.path.exists(flag):
                open(flag, "w").close()
                raise RuntimeError("injected failure at epoch 2")
            d = _tempfile.mkdtemp()
            with open(_os.path.join(d, "epoch"), "w") as f:
                f.write(str(epoch))
            metrics = {"epoch": epoch, "train_loss": 1.0 / epoch, "val_acc_gt": 0.5 + 0.01 * epoch,
                       "val_acc_weak": 0.6, "objective": 0.1 * config["i"]}
            if epoch == n_epochs:
                metrics.update(weak_val_acc=0.6, ceiling_val_acc=0.6, student_val_acc=0.61,
                               val_pgr=_math.nan, pgr_defined=0, student_weak_agreement=0.9, misfit_kl=0.1)
            _tune.report(metrics, checkpoint=_tune.Checkpoint.from_directory(d))

    return trainable


def _weak_labels_parquet(path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": [0, 1, 2], "soft_label": [0.1, 0.8, 0.6]}), path)
    return path


def _runs(client, exp_id: str, role: str) -> list:
    return client.search_runs([exp_id], filter_string=f"tags.`w2s.role` = '{role}'", max_results=1000)


def _artifact_files(client, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for info in client.list_artifacts(run_id, path):
        out.extend(_artifact_files(client, run_id, info.path) if info.is_dir else [info.path])
    return out


@pytest.fixture(params=["embedded", "postgres"])
def tracking(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(backend, tracking URI): the embedded sqlite default, or a real server on PostgreSQL (a server
    on sqlite runs a search in ``tests/test_faults_ray.py``'s tracking-outage test)."""
    if request.param == "embedded":
        return "embedded", default_tracking_uri(tmp_path / "work")
    server: MlflowServer = request.getfixturevalue(f"mlflow_{request.param}_server")
    return request.param, server.uri


@pytest.mark.ray
@pytest.mark.mlflow_server
def test_search_is_tracked_and_resume_continues_the_same_runs(
    tmp_path: Path, tracking: tuple[str, str], ray_local
) -> None:
    from mlflow import MlflowClient
    from ray import tune

    backend, uri = tracking
    checkpoints = "best" if backend == "postgres" else "all"
    check_tracking_uri(uri)
    storage = tmp_path / "storage"
    experiment = f"toy-{backend}-{uuid.uuid4().hex[:6]}"
    tracker = SearchTracker(uri, experiment, "search-A", storage)
    parent = tracker.start({"task": "toy", "num_samples": N_TRIALS}, {"preset": "test"},
                           search_space={"i": {"type": "grid", "values": list(range(N_TRIALS))}})
    stage_dir = tmp_path / "weak_ckpt"
    stage_dir.mkdir()
    (stage_dir / "model.bin").write_bytes(b"weights")
    weak = tracker.log_stage("weak", "weakkey123", {"weak_val_acc": 0.6}, {
        "weak_labels": _weak_labels_parquet(tmp_path / "weak_labels.parquet"), "checkpoint": stage_dir,
    }, {"model": "tiny"})
    ceiling = tracker.log_stage("ceiling", "ceilkey456", {"ceiling_val_acc": 0.7}, {}, {"model": "tiny"})
    assert tracker.log_stage("weak", "weakkey123", {"weak_val_acc": 0.6}, {}, {}) == weak  # idempotent

    flags = tmp_path / "flags"
    flags.mkdir()
    trainable = _make_trainable()
    tuner = tune.Tuner(
        trainable,
        param_space={"i": tune.grid_search(list(range(N_TRIALS))), "fail_once_dir": str(flags)},
        run_config=tune.RunConfig(storage_path=str(storage), name="toy", verbose=0,
                                  callbacks=[tracker.callback(checkpoints=checkpoints)]),
    )
    results = tuner.fit()
    assert sum(r.error is not None for r in results) == 1

    client = MlflowClient(uri)
    exp_id = tracker.experiment_id
    assert [r.info.run_id for r in _runs(client, exp_id, "search")] == [parent]
    trials = {r.data.tags["w2s.trial_id"]: r for r in _runs(client, exp_id, "trial")}
    assert len(trials) == N_TRIALS
    failed = [r for r in trials.values() if r.info.status == "FAILED"]
    assert len(failed) == 1 and failed[0].data.tags["w2s.error"] == "RuntimeError: injected failure at epoch 2"
    assert "error.txt" in _artifact_files(client, failed[0].info.run_id)
    for run in trials.values():
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.tags["w2s.stage_run.weak"] == weak and run.data.tags["w2s.stage_run.ceiling"] == ceiling
        assert "i" in run.data.params
    for run in trials.values():
        if run.info.status == "FAILED":
            continue
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert sorted(m.step for m in history) == list(range(1, N_EPOCHS + 1))
        assert run.data.metrics["student_val_acc"] == pytest.approx(0.61)
        assert run.data.tags["w2s.nonfinite.val_pgr"] == "nan"
        ckpt_files = [f for f in _artifact_files(client, run.info.run_id) if f.startswith("checkpoints/")]
        expected = N_EPOCHS if checkpoints == "all" else 1
        assert len(ckpt_files) == expected and all(f.endswith("/epoch") for f in ckpt_files)

    stages = {r.data.tags["w2s.stage"]: r for r in _runs(client, exp_id, "stage")}
    assert sorted(stages) == ["ceiling", "weak"]
    assert all(r.data.tags["mlflow.parentRunId"] == parent for r in stages.values())
    assert "weak_labels/weak_labels.parquet" in _artifact_files(client, weak)
    assert "checkpoint/model.bin" in _artifact_files(client, weak)

    # A new driver resumes the interrupted search: same parent, same child runs.
    BufferedClient.forget_shared()
    tracker2 = SearchTracker(uri, experiment, "search-A", storage)
    assert tracker2.start({"task": "toy", "num_samples": N_TRIALS}) == parent and tracker2.resumed
    assert tracker2.stage_run_ids == {"weak": weak, "ceiling": ceiling}
    # resume_errored keeps the trial id (restart_errored would make a new trial, hence a new run).
    restored = tune.Tuner.restore(str(storage / "toy"), trainable, resume_errored=True)
    assert all(r.error is None for r in restored.fit())
    report = tracker2.finish({"baseline_val_pgr": 0.2, "best_val_pgr": 0.4, "best_test_pgr": math.nan},
                             {"lr": 1e-4, "loss": {"name": "logconf", "aux_coef": 0.5}},
                             {"": _weak_labels_parquet(tmp_path / "trials.parquet")})
    assert report.ok, report.summary()

    assert [r.info.run_id for r in _runs(client, exp_id, "search")] == [parent]
    after = {r.data.tags["w2s.trial_id"]: r for r in _runs(client, exp_id, "trial")}
    assert {k: r.info.run_id for k, r in after.items()} == {k: r.info.run_id for k, r in trials.items()}
    assert all(r.info.status == "FINISHED" and "w2s.error" not in r.data.tags for r in after.values())
    resumed = after[failed[0].data.tags["w2s.trial_id"]].info.run_id  # resumed from its epoch-1 checkpoint
    assert sorted(m.step for m in client.get_metric_history(resumed, "train_loss")) == list(range(1, N_EPOCHS + 1))
    assert len(_runs(client, exp_id, "stage")) == 2
    final = client.get_run(parent)
    assert final.info.status == "FINISHED"
    assert final.data.tags["best.loss/name"] == "logconf" and final.data.tags["w2s.resume_count"] == "1"
    assert final.data.metrics["best_val_pgr"] == pytest.approx(0.4)
    assert final.data.tags["w2s.nonfinite.best_test_pgr"] == "nan"
    assert {"best_config.yaml", "summary.json", "search_space.yaml", "trials.parquet"} <= set(
        _artifact_files(client, parent))
    assert final.data.tags["w2s.search_key"] == search_key("search-A")
    if backend == "embedded":
        _check_mlflow_ui_shows(uri, tmp_path, parent, [r.info.run_id for r in after.values()])


def _check_mlflow_ui_shows(backend_store_uri: str, tmp_path: Path, parent: str, trial_runs: list[str]) -> None:
    """`mlflow ui --backend-store-uri <embedded db>` (the README's command) serves the runs and artifacts."""
    from mlflow import MlflowClient

    proc, ui = start_mlflow_server(backend_store_uri, None, tmp_path / "ui.log", command="ui")
    try:
        client = MlflowClient(ui)
        assert client.get_run(parent).data.tags["w2s.role"] == "search"
        for run_id in trial_runs:
            assert client.get_run(run_id).data.tags["mlflow.parentRunId"] == parent
            with urllib.request.urlopen(f"{ui}/ajax-api/2.0/mlflow/artifacts/list?run_id={run_id}", timeout=30) as r:
                listing = json.load(r)
            assert "checkpoints" in [f["path"] for f in listing.get("files", [])]
    finally:
        stop_process_group(proc)


@pytest.mark.mlflow_server
def test_callback_without_state_finds_the_existing_trial_run(
    mlflow_sqlite_server: MlflowServer, tmp_path: Path
) -> None:
    """A driver that lost the callback state still continues the trial's run (found by tag)."""
    from w2s_ray.tracking.callback import MLflowTrialCallback

    tracker = SearchTracker(mlflow_sqlite_server.uri, f"cb-{uuid.uuid4().hex[:6]}", "s", tmp_path)
    parent = tracker.start({})

    class FakeTrial:
        trial_id, config, status = "abc_00000", {"lr": 0.1}, "RUNNING"

    first = MLflowTrialCallback(mlflow_sqlite_server.uri, tracker.experiment_id, parent)
    first.on_trial_start(0, [], FakeTrial())
    again = MLflowTrialCallback(mlflow_sqlite_server.uri, tracker.experiment_id, parent)
    again.on_trial_start(0, [], FakeTrial())
    assert again.run_id("abc_00000") == first.run_id("abc_00000") is not None
    with pytest.raises(UserError, match="unknown checkpoint mode 'some'; available: all, best, none"):
        MLflowTrialCallback(mlflow_sqlite_server.uri, tracker.experiment_id, parent, checkpoints="some")


@pytest.mark.ray
@pytest.mark.mlflow_server
def test_search_survives_tracking_server_outage(tmp_path: Path, mlflow_sqlite_server: MlflowServer, ray_local) -> None:
    """Issue 6.5: the server goes down after the first result and returns only at the end."""
    from mlflow import MlflowClient
    from ray import tune

    proxy = ToggleProxy(int(mlflow_sqlite_server.uri.rsplit(":", 1)[1]))

    class Outage(tune.Callback):
        """Cuts the server off at the first result; restores it when the search ends."""

        def __init__(self, proxy: ToggleProxy, client: BufferedClient) -> None:
            self.proxy, self.client, self.pending_at_end = proxy, client, None

        def __getstate__(self) -> dict:  # Tune pickles callbacks; sockets cannot be pickled
            return {}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.proxy.down()

        def on_experiment_end(self, trials, **info):
            self.pending_at_end = self.client.report().pending
            self.proxy.up()

    try:
        tracker = SearchTracker(proxy.uri, f"outage-{uuid.uuid4().hex[:6]}", "s", tmp_path / "storage")
        parent = tracker.start({"task": "toy"})
        outage = Outage(proxy, tracker.client)
        tuner = tune.Tuner(
            _make_trainable(),
            param_space={"i": tune.grid_search([0, 2]), "fail_once_dir": str(tmp_path)},
            run_config=tune.RunConfig(storage_path=str(tmp_path / "storage"), name="toy", verbose=0,
                                      callbacks=[outage, tracker.callback("best")]),
        )
        assert all(r.error is None for r in tuner.fit())
        assert outage.pending_at_end["metrics"] > 0  # writes were really buffered during the outage
        assert tracker.finish({"best_val_pgr": 0.1}, {"i": 0}).ok
    finally:
        proxy.close()
    assert not (tmp_path / "storage" / "mlflow_unlogged.json").exists()
    client = MlflowClient(mlflow_sqlite_server.uri)
    trials = _runs(client, tracker.experiment_id, "trial")
    assert len(trials) == 2
    for run in trials:
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train_loss")) == [1, 2, 3]
        assert any(f.startswith("checkpoints/") for f in _artifact_files(client, run.info.run_id))


# ----- mlflow/ (server setup) ----------------------------------------------------------------------
def test_repo_mlflow_dir_does_not_shadow_the_library() -> None:
    assert not (REPO / "mlflow" / "__init__.py").exists()
    out = subprocess.run([sys.executable, "-c", "import mlflow; print(mlflow.__file__)"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert "site-packages" in out


def test_compose_file_has_no_secrets_binds_localhost_and_proxies_artifacts() -> None:
    import yaml
    from mlflow.cli import server

    doc = yaml.safe_load((REPO / "mlflow" / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"postgres", "minio", "create-bucket", "mlflow"} <= set(services)
    secret_key = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", re.I)
    env_ref = re.compile(r"\$\{[A-Z_]+:\?[^}]+\}")  # ${VAR:?message}: required, from the environment
    for name, svc in services.items():
        for key, value in (svc.get("environment") or {}).items():
            if secret_key.search(key):
                assert env_ref.fullmatch(str(value)), f"{name}.{key} must come from the environment"
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
    mlflow_svc = services["mlflow"]
    backend = mlflow_svc["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert backend.startswith("postgresql+psycopg2://") and "${POSTGRES_PASSWORD:?" in backend
    assert re.sub(r"\$\{[^}]+\}", "", backend) == "postgresql+psycopg2://:@postgres:5432/"  # no literal user/password
    backend_opt = next(p for p in server.params if p.name == "backend_store_uri")
    assert backend_opt.envvar == "MLFLOW_BACKEND_STORE_URI"  # how the server receives it
    command = " ".join(mlflow_svc["command"])
    for flag in ("--serve-artifacts", "--allowed-hosts", "--artifacts-destination", "--host"):
        assert flag in command
    assert "s3://" in command and mlflow_svc["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    known = {opt for p in server.params for opt in p.opts}
    assert set(re.findall(r"--[a-z][a-z-]+", command)) <= known  # every flag exists in this mlflow


@pytest.mark.mlflow_server
def test_dev_server_script_serves_runs_and_artifacts(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    port = free_port()
    env = {**os.environ, "MLFLOW_PORT": str(port), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log_path = tmp_path / "dev.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["bash", str(REPO / "mlflow" / "dev_server.sh"), str(tmp_path / "srv")],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, uri, log_path)
        check_tracking_uri(uri)
        client = MlflowClient(uri)
        run = client.create_run(client.create_experiment("dev"))
        (tmp_path / "note.txt").write_text("hello")
        client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
    finally:
        stop_process_group(proc)
    assert (tmp_path / "srv" / "mlflow.db").is_file()
    assert [p.name for p in (tmp_path / "srv" / "mlartifacts").rglob("note.txt")] == ["note.txt"]
