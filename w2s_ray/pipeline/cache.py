"""Content-addressed stage cache with atomic writes.

A stage's output lives in ``<root>/<kind>/<key>/`` and is valid only once the directory
exists *and* holds the ``_COMPLETE`` marker, written last. Entries are built in a private
temp dir beside the target and moved into place with ``os.replace``, so a crash mid-write
leaves no partial entry. Remote roots (``s3://``, ``gs://``) are served through a local
mirror with ``pyarrow.fs``: upload first, marker last.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from w2s_ray.config import to_dict
from w2s_ray.remote import is_remote

CACHE_FORMAT = 1  # bump when a stage's output layout or semantics change
COMPLETE = "_COMPLETE"
LEDGER = "ledger.jsonl"


def stage_key(kind: str, payload: Any) -> str:
    """Hash of everything that determines a stage's output (canonical JSON, sha256)."""
    blob = json.dumps(
        {"kind": kind, "format": CACHE_FORMAT, "payload": to_dict(payload)},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class StageCache:
    """Atomic, content-addressed store for stage outputs."""

    def __init__(self, root: str | os.PathLike[str]):
        self.uri = str(root)
        if is_remote(self.uri):
            import pyarrow.fs as pafs

            self._fs, self._remote_root = pafs.FileSystem.from_uri(self.uri)
            mirror = Path(os.environ.get("W2S_CACHE_MIRROR", Path.home() / ".cache" / "w2s_ray" / "mirror"))
            self.root = mirror / hashlib.sha1(self.uri.encode()).hexdigest()[:12]
        else:
            self._fs = None
            self.root = Path(self.uri.removeprefix("file://")).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    # -- lookup ---------------------------------------------------------
    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def get(self, kind: str, key: str) -> Path | None:
        """The entry's local directory if it is complete, else None."""
        local = self.path(kind, key)
        if (local / COMPLETE).exists():
            return local
        if self._fs is not None and self._remote_complete(kind, key):
            self._download(kind, key)
            return local
        return None

    def entries(self, kind: str) -> list[str]:
        """Keys of every complete entry of ``kind`` (local, plus the remote root's if any)."""
        local = self.root / kind
        keys = {p.parent.name for p in local.glob(f"*/{COMPLETE}")} if local.is_dir() else set()
        if self._fs is not None:
            import pyarrow.fs as pafs

            selector = pafs.FileSelector(f"{self._remote_root.rstrip('/')}/{kind}", allow_not_found=True)
            for info in self._fs.get_file_info(selector):
                if info.type == pafs.FileType.Directory and self._remote_complete(kind, info.base_name):
                    keys.add(info.base_name)
        return sorted(keys)

    def put(self, kind: str, key: str, build: Callable[[Path], Any]) -> Path:
        """Build an entry with ``build(tmpdir)`` and publish it atomically; reuse if present."""
        existing = self.get(kind, key)
        if existing is not None:
            return existing
        target = self.path(kind, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=target.parent))
        try:
            build(tmp)
            (tmp / COMPLETE).write_text(json.dumps({"time": time.time(), "pid": os.getpid()}))
            self.publish(tmp, kind, key)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def publish(self, built: Path, kind: str, key: str) -> Path:
        """Move a fully built directory (marker included) into place atomically."""
        target = self.path(kind, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not (built / COMPLETE).exists():
            (built / COMPLETE).write_text(json.dumps({"time": time.time(), "pid": os.getpid()}))
        if (target / COMPLETE).exists():  # somebody else won the race; theirs is identical
            shutil.rmtree(built, ignore_errors=True)
            self._remove_stale_staging(kind, key)
            return target
        if target.exists():  # stale, incomplete leftover from a crash
            shutil.rmtree(target, ignore_errors=True)
        os.replace(built, target)
        self._remove_stale_staging(kind, key)
        if self._fs is not None:
            self._upload(kind, key)
        return target

    def _remove_stale_staging(self, kind: str, key: str) -> None:
        """Staging dirs of writers killed before publishing this key (the entry now exists)."""
        for leftover in self.path(kind, key).parent.glob(f".{key}.*"):
            shutil.rmtree(leftover, ignore_errors=True)

    def staging_dir(self, kind: str, key: str) -> Path:
        """A fresh private directory next to the entry, for a writer that publishes later."""
        parent = self.path(kind, key).parent
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{key}.{uuid.uuid4().hex[:6]}.", dir=parent))

    # -- ledger of trainings (for counting, benchmarks and tests) --------
    def record_training(self, stage: str, key: str, **extra: Any) -> None:
        line = json.dumps({"stage": stage, "key": key, "time": time.time(), "pid": os.getpid(), **extra})
        with open(self.root / LEDGER, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def trainings(self) -> list[dict]:
        ledger = self.root / LEDGER
        if not ledger.exists():
            return []
        return [json.loads(x) for x in ledger.read_text().splitlines() if x.strip()]

    # -- remote mirror -----------------------------------------------------
    def _remote(self, kind: str, key: str) -> str:
        return f"{self._remote_root.rstrip('/')}/{kind}/{key}"

    def _remote_complete(self, kind: str, key: str) -> bool:
        import pyarrow.fs as pafs

        info = self._fs.get_file_info(f"{self._remote(kind, key)}/{COMPLETE}")
        return info.type != pafs.FileType.NotFound

    def _download(self, kind: str, key: str) -> None:
        import pyarrow.fs as pafs

        tmp = self.staging_dir(kind, key)
        pafs.copy_files(self._remote(kind, key), str(tmp), source_filesystem=self._fs,
                        destination_filesystem=pafs.LocalFileSystem())
        target = self.path(kind, key)
        if not target.exists():
            os.replace(tmp, target)

    def _upload(self, kind: str, key: str) -> None:
        import pyarrow.fs as pafs

        local = self.path(kind, key)
        remote = self._remote(kind, key)
        for path in sorted(local.rglob("*")):
            if path.is_file() and path.name != COMPLETE:
                dest = f"{remote}/{path.relative_to(local).as_posix()}"
                self._fs.create_dir(dest.rsplit("/", 1)[0], recursive=True)
                pafs.copy_files(str(path), dest, source_filesystem=pafs.LocalFileSystem(),
                                destination_filesystem=self._fs)
        with self._fs.open_output_stream(f"{remote}/{COMPLETE}") as out:  # marker last
            out.write((local / COMPLETE).read_bytes())
