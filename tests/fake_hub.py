"""A loopback HTTP server that answers like the Hugging Face hub's file API, for tests.

Serves a folder laid out as ``<root>/models/<repo>/...`` and ``<root>/datasets/<repo>/...``:

* ``HEAD|GET /<repo>/resolve/<rev>/<file>`` and ``/datasets/<repo>/resolve/<rev>/<file>``
  (what ``hf_hub_download`` asks for; ``X-Repo-Commit`` and ``ETag`` headers as the hub sends);
* ``GET /api/models|datasets/<repo>[/revision/<rev>]`` (repo info: ``sha``, ``siblings``);
* ``GET /api/models|datasets/<repo>/tree/<rev>[/<path>]`` and ``POST .../paths-info/<rev>``
  (what ``HfFileSystem`` lists, which ``datasets.load_dataset`` uses to find data files).

Anything else is a 404, and every request is recorded in ``requests`` so tests can assert on
what the libraries fetched. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SHA = "0123456789abcdef0123456789abcdef01234567"  # one fixed commit for every repo


@dataclass
class FakeHub:
    root: Path
    requests: list[tuple[str, str]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FakeHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                hub._answer(self, head=True)

            def do_GET(self) -> None:  # noqa: N802
                hub._answer(self, head=False)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                hub._answer(self, head=False, body=body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ------------------------------------------------------------------ routing

    def _repo_dir(self, kind: str, repo: str) -> Path | None:
        path = self.root / kind / repo
        return path if path.is_dir() else None

    def _answer(self, req: BaseHTTPRequestHandler, head: bool, body: str = "") -> None:
        parsed = urllib.parse.urlsplit(req.path)
        path = urllib.parse.unquote(parsed.path)
        self.requests.append((req.command, req.path))
        if path.startswith("/api/"):
            return self._api(req, path[len("/api/"):], body, head)
        kind = "models"
        if path.startswith("/datasets/"):
            kind, path = "datasets", path[len("/datasets"):]
        repo, sep, rest = path.lstrip("/").partition("/resolve/")
        if not sep:
            return self._send(req, 404, b"not found", head=head)
        rev, _, filename = rest.partition("/")
        base = self._repo_dir(kind, repo)
        file = base / filename if base is not None else None
        if rev not in ("main", SHA) or file is None or not file.is_file():
            return self._send(req, 404, b"Entry not found", head=head, extra={"X-Error-Code": "EntryNotFound"})
        data = file.read_bytes()
        self._send(req, 200, data, head=head, ctype="application/octet-stream",
                   extra={"X-Repo-Commit": SHA, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'})

    def _api(self, req: BaseHTTPRequestHandler, path: str, body: str, head: bool) -> None:
        kind, _, rest = path.partition("/")
        if kind not in ("models", "datasets"):
            return self._send(req, 404, b"{}", head=head)
        for marker in ("/tree/", "/paths-info/", "/revision/"):
            repo, sep, tail = rest.partition(marker)
            if sep:
                break
        else:
            repo, marker, tail = rest, "", ""
        base = self._repo_dir(kind, repo)
        if base is None:
            return self._json(req, 404, {"error": "Repository not found"}, head, {"X-Error-Code": "RepoNotFound"})
        rev, _, sub = tail.partition("/")
        if marker and rev not in ("main", SHA):
            return self._json(req, 404, {"error": "Revision not found"}, head, {"X-Error-Code": "RevisionNotFound"})
        files = sorted(p for p in base.rglob("*") if p.is_file())
        if marker == "/tree/":
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(req.path).query)
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            start = base / sub if sub else base
            if not start.is_dir():
                return self._json(req, 404, {"error": "not found"}, head, {"X-Error-Code": "EntryNotFound"})
            items = start.rglob("*") if recursive else start.iterdir()
            return self._json(req, 200, [self._entry(base, p) for p in sorted(items)], head)
        if marker == "/paths-info/":
            wanted = self._paths_in(body)
            return self._json(req, 200, [self._entry(base, base / p) for p in wanted if (base / p).exists()], head)
        info = {"id": repo, "_id": repo, "sha": SHA, "private": False, "gated": False, "disabled": False,
                "downloads": 0, "likes": 0, "tags": [], "cardData": {}, "lastModified": "2024-01-01T00:00:00.000Z",
                "siblings": [{"rfilename": p.relative_to(base).as_posix()} for p in files]}
        self._json(req, 200, info, head)

    @staticmethod
    def _paths_in(body: str) -> list[str]:
        if body.lstrip().startswith("{"):
            paths = json.loads(body).get("paths", [])
            return [paths] if isinstance(paths, str) else list(paths)
        return [v for k, v in urllib.parse.parse_qsl(body) if k == "paths"]

    @staticmethod
    def _entry(base: Path, path: Path) -> dict:
        rel = path.relative_to(base).as_posix()
        if path.is_dir():
            return {"type": "directory", "path": rel, "oid": hashlib.sha1(rel.encode()).hexdigest()}
        data = path.read_bytes()
        return {"type": "file", "path": rel, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}

    def _json(self, req, status: int, obj, head: bool, extra: dict | None = None) -> None:
        self._send(req, status, json.dumps(obj).encode(), head=head, ctype="application/json", extra=extra)

    @staticmethod
    def _send(req, status: int, data: bytes, head: bool, ctype: str = "text/plain", extra: dict | None = None) -> None:
        req.send_response(status)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            req.send_header(k, v)
        req.end_headers()
        if not head:
            req.wfile.write(data)
