"""The search's storage path: local dir or ``s3://`` / ``gs://`` (via ``pyarrow.fs``)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

from w2s_ray.errors import UserError
from w2s_ray.remote import is_remote


def normalize(uri: str) -> str:
    """Absolute local path, or the remote URI unchanged."""
    return uri if is_remote(uri) else str(Path(uri.removeprefix("file://")).expanduser().resolve())


def check_writable(uri: str, what: str = "storage path") -> None:
    """Fail with one line before anything starts if directory ``uri`` cannot be written.

    ``what`` names the option in the message (``--cache-dir``, ``storage path``...).
    """
    if is_remote(uri):
        import pyarrow.fs as pafs

        try:
            fs, root = pafs.FileSystem.from_uri(uri)
            probe = f"{root.rstrip('/')}/.w2s_write_probe_{uuid.uuid4().hex[:8]}"
            with fs.open_output_stream(probe) as out:
                out.write(b"ok")
            fs.delete_file(probe)
        except Exception as exc:  # noqa: BLE001 - any failure means "not writable"
            raise UserError(f"{what} {uri} is not writable: {str(exc).splitlines()[0]}; "
                            "pass a writable location") from None
        return
    path = Path(uri.removeprefix("file://")).expanduser()
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what} {uri} is not writable ({existing} is a file); pass a writable directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} {uri} is not writable ({existing} is read-only); pass a writable directory")


def publish_dir(local: Path, uri: str) -> None:
    """Copy a finished local output dir to the storage path (no-op when local == target)."""
    if is_remote(uri):
        import pyarrow.fs as pafs

        pafs.copy_files(str(local), uri, source_filesystem=pafs.LocalFileSystem())
        return
    target = Path(uri)
    if target.resolve() == local.resolve():
        return
    target.mkdir(parents=True, exist_ok=True)
    for item in local.iterdir():
        dest = target / item.name
        tmp = Path(tempfile.mkdtemp(dir=target, prefix=f".{item.name}."))
        staged = tmp / item.name
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, staged)
        if dest.is_dir():
            shutil.rmtree(dest)
        os.replace(staged, dest)
        shutil.rmtree(tmp, ignore_errors=True)
