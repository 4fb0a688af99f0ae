"""Tracking URI: the embedded default, CLI/env resolution, and a fast reachability check."""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from w2s_ray.errors import UserError

DB_FILENAME = "mlflow.db"
ARTIFACTS_DIRNAME = "mlartifacts"
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"

_HTTP_SCHEMES = ("http", "https")
_SQL_SCHEMES = ("postgresql", "mysql", "mssql")  # any SQLAlchemy driver suffix, e.g. postgresql+psycopg2


def default_tracking_uri(workdir: Path) -> str:
    """The embedded default: `sqlite:///<workdir>/mlflow.db` (no server needed)."""
    return f"sqlite:///{(Path(workdir).expanduser().resolve() / DB_FILENAME).as_posix()}"


def default_artifact_dir(workdir: Path) -> Path:
    """Where the embedded default stores artifacts: `<workdir>/mlartifacts`."""
    return Path(workdir).expanduser().resolve() / ARTIFACTS_DIRNAME


def given_tracking_uri(cli_value: str | None) -> str | None:
    """`--tracking-uri` if given, else `$MLFLOW_TRACKING_URI`, else None (driver filled in, see `with_driver`)."""
    for value in (cli_value, os.environ.get(ENV_TRACKING_URI)):
        if value and value.strip():
            return with_driver(value.strip())
    return None


def resolve_tracking_uri(cli_value: str | None, workdir: Path) -> str:
    """`--tracking-uri` if given, else `$MLFLOW_TRACKING_URI`, else the embedded sqlite default."""
    return given_tracking_uri(cli_value) or default_tracking_uri(workdir)


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def with_driver(uri: str) -> str:
    """A plain `postgresql://` URI with the installed driver named.

    SQLAlchemy 2.1 defaults `postgresql://` to psycopg 3; the project ships psycopg2, so the URI
    becomes `postgresql+psycopg2://` when psycopg2 is importable and psycopg is not.
    """
    head, sep, rest = uri.partition("://")
    if sep and head.lower() in ("postgresql", "postgres") and _importable("psycopg2") and not _importable("psycopg"):
        return f"postgresql+psycopg2://{rest}"
    return uri


def store_exists(uri: str) -> bool:
    """False only for a local store (sqlite file, file store) that is not there yet: opening it would create it."""
    scheme = scheme_of(uri)
    if scheme == "sqlite":
        db = _sqlite_path(uri)
        return db is not None and db.is_file()
    if scheme in ("file", ""):
        return Path(urllib.parse.urlsplit(uri).path if scheme else uri).expanduser().exists()
    return True


def scheme_of(uri: str) -> str:
    """The URI's scheme without a SQLAlchemy driver suffix (`postgresql+psycopg2` -> `postgresql`)."""
    return urllib.parse.urlsplit(uri).scheme.split("+", 1)[0].lower()


def is_server_uri(uri: str) -> bool:
    """True for an `http(s)://` tracking server (it manages its own artifact store)."""
    return scheme_of(uri) in _HTTP_SCHEMES


def redact(uri: str) -> str:
    """The URI with any password removed, for messages and tags."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + netloc))


def artifact_location_for(tracking_uri: str, workdir: str | Path) -> str | None:
    """Artifact root to set when creating an experiment.

    None for a tracking server (it serves artifacts itself, `--serve-artifacts`); for a sqlite
    file, `mlartifacts/` beside the database; for any other database, `<workdir>/mlartifacts`
    (`workdir` may be a local path or a `s3://`/`gs://` URI).
    """
    if is_server_uri(tracking_uri):
        return None
    if scheme_of(tracking_uri) == "sqlite":
        db = _sqlite_path(tracking_uri)
        if db is not None:
            return (db.parent / ARTIFACTS_DIRNAME).as_uri()
    if "://" in str(workdir):
        return f"{str(workdir).rstrip('/')}/{ARTIFACTS_DIRNAME}"
    return default_artifact_dir(Path(workdir)).as_uri()


def check_tracking_uri(uri: str, timeout_s: float = 5) -> None:
    """Fail fast, before any training, with one clear `UserError` if `uri` cannot be used.

    http(s): GET `<uri>/health` once (no retry loop). sqlite/file: the database's directory
    (or its nearest existing parent) must be writable. postgresql/mysql/...: one connection.
    """
    scheme = scheme_of(uri)
    if scheme in _HTTP_SCHEMES:
        _check_http(uri, timeout_s)
    elif scheme == "sqlite":
        db = _sqlite_path(uri)
        if db is None:
            raise UserError(f"in-memory sqlite tracking URI {uri!r} would lose all runs; use a file")
        _check_writable(db.parent, f"MLflow sqlite database {db}")
    elif scheme in ("file", ""):
        path = Path(urllib.parse.urlsplit(uri).path if scheme else uri).expanduser()
        _check_writable(path, f"MLflow file store {path}")
    elif scheme in _SQL_SCHEMES:
        _check_sql(uri, timeout_s)
    else:
        raise UserError(
            f"unsupported MLflow tracking URI scheme {scheme!r} in {redact(uri)!r}; "
            "available: http, https, sqlite, postgresql, mysql, mssql, file"
        )


def _sqlite_path(uri: str) -> Path | None:
    rest = uri.split(":", 1)[1]  # '///abs/path.db' or '///rel.db' or '//' (memory)
    path = rest[3:] if rest.startswith("///") else rest.lstrip("/")
    path = path.split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path).expanduser().resolve()


def _check_writable(path: Path, what: str) -> None:
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{what} is not writable: {probe} is not a writable directory")


_ALLOWED_HOSTS_HINT = " (is this host in the server's --allowed-hosts?)"
_HTTP_HINTS = {400: _ALLOWED_HOSTS_HINT, 403: _ALLOWED_HOSTS_HINT, 404: " (is it an MLflow tracking server?)"}


def _check_http(uri: str, timeout_s: float) -> None:
    shown = redact(uri).rstrip("/")
    parts = urllib.parse.urlsplit(uri)
    netloc = parts.netloc.rsplit("@", 1)[-1]  # credentials travel via MLFLOW_TRACKING_USERNAME
    url = urllib.parse.urlunsplit(parts._replace(netloc=netloc)).rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (http(s) only)
            status = resp.status
    except urllib.error.HTTPError as exc:
        hint = _HTTP_HINTS.get(exc.code, "")
        raise UserError(
            f"MLflow tracking server at {shown} is unreachable: /health returned HTTP {exc.code}{hint}"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"MLflow tracking server at {shown} is unreachable: {reason}") from None
    if status != 200:
        raise UserError(f"MLflow tracking server at {shown} is unreachable: /health returned HTTP {status}")


def _check_sql(uri: str, timeout_s: float) -> None:
    import sqlalchemy

    connect_args = {"connect_timeout": max(1, int(timeout_s))} if scheme_of(uri) in ("postgresql", "mysql") else {}
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
    except ImportError as exc:
        raise UserError(
            f"MLflow tracking database at {redact(uri)} needs a missing driver ({exc}); "
            "name an installed one, e.g. postgresql+psycopg2://"
        ) from None
    except Exception as exc:  # driver errors vary (OperationalError, ArgumentError...)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise UserError(
            f"MLflow tracking database at {redact(uri)} is unreachable: {reason[0] if reason else type(exc).__name__}"
        ) from None
