"""A small Hugging Face Hub-compatible server on loopback, for `HF_ENDPOINT`.

It answers what `huggingface_hub` asks when it resolves and downloads a file:

- `GET|HEAD /{repo}/resolve/{revision}/{path}` (and `/datasets/{repo}/...`) with
  `X-Repo-Commit`, `ETag` and, for LFS files, `X-Linked-Etag` / `X-Linked-Size`; Range requests
  answer 206. Errors carry the Hub's `X-Error-Code` (RepoNotFound, RevisionNotFound,
  EntryNotFound, GatedRepo) so the library raises its own typed errors.
- `GET /api/{models|datasets}/{repo}/revision/{revision}`: the repo info with `sha`.
- `POST /api/{models|datasets}/{repo}/paths-info/{revision}`: size, git oid and `lfs.oid`
  (the sha256) per path.

    with HubServer() as hub:
        commit = hub.add_file("org/repo", "dir/model.safetensors", data)  # on "main"
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        hub.require_token("org/repo", "test-token")  # private: 401 without that bearer token
        hub.drop_after["dir/model.safetensors"] = 1000  # next GET of it is cut after 1000 bytes
        hub.drop_every["dir/model.safetensors"] = 0  # every later GET too, until removed
        hub.corrupt["dir/model.safetensors"] = other  # serve other bytes, same metadata
        hub.downloads("dir/model.safetensors")  # GETs of that file's content

Each `add_file` makes a new commit on the branch (its files are the previous commit's plus the
new one), so a branch can move while old commits stay resolvable.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote

from support.httpserver import LoopbackServer, serve_bytes


@dataclass
class _Repo:
    repo_type: str = "model"
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit
    commits: dict[str, dict[str, tuple[bytes, bool]]] = field(default_factory=dict)
    token: str | None = None
    gated: bool = False


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self.server.owner.handle(self, head=True)  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self.server.owner.handle(self, head=False)  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        self.server.owner.handle_post(self)  # type: ignore[attr-defined]


class HubServer(LoopbackServer):
    handler_class = _HubHandler

    def __init__(self) -> None:
        super().__init__()
        self.repos: dict[str, _Repo] = {}
        self.drop_after: dict[str, int] = {}  # one-shot: removed after it fires
        self.drop_every: dict[str, int] = {}
        self.corrupt: dict[str, bytes] = {}
        self.rate: float | None = None  # bytes per second, None: as fast as loopback goes
        self.ranges: list[tuple[str, str | None]] = []  # (file path, Range header) per GET
        self._seq = 0

    @property
    def endpoint(self) -> str:
        return self.base_url

    # -- content -------------------------------------------------------------------------

    def add_file(
        self,
        repo: str,
        path: str,
        data: bytes,
        *,
        revision: str = "main",
        repo_type: str = "model",
        lfs: bool = True,
    ) -> str:
        """Commit `data` at `path` on branch `revision`; returns the new commit id."""
        with self._lock:
            state = self.repos.setdefault(repo, _Repo(repo_type=repo_type))
            parent = state.branches.get(revision)
            files = dict(state.commits[parent]) if parent else {}
            files[path] = (data, lfs)
            self._seq += 1
            commit = hashlib.sha1(f"{repo}@{revision}#{self._seq}".encode()).hexdigest()
            state.commits[commit] = files
            state.branches[revision] = commit
            return commit

    def require_token(self, repo: str, token: str) -> None:
        self.repos[repo].token = token

    def gate(self, repo: str) -> None:
        self.repos[repo].gated = True

    def downloads(self, path: str) -> int:
        return sum(n for (method, p), n in self.counts.items() if method == "GET" and p == path)

    # -- routing -------------------------------------------------------------------------

    def _error(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        code: str | None,
        message: str = "",
        head: bool = False,
        commit: str | None = None,
    ) -> None:
        body = json.dumps({"error": message or code or str(status)}).encode()
        handler.send_response(status)
        if code:
            handler.send_header("X-Error-Code", code)
        if message:
            handler.send_header("X-Error-Message", message)
        if commit:
            handler.send_header("X-Repo-Commit", commit)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if not head:
            handler.wfile.write(body)

    def _split_repo(self, parts: list[str]) -> tuple[str, str, list[str]]:
        repo_type = "model"
        if parts and parts[0] in ("datasets", "spaces"):
            repo_type = parts[0][:-1]
            parts = parts[1:]
        return repo_type, "/".join(parts[:2]), parts[2:]

    def _authorise(self, handler: BaseHTTPRequestHandler, repo: str, head: bool) -> _Repo | None:
        """The repo if the caller may read it; else the error has been sent."""
        state = self.repos.get(repo)
        if state is None:
            self._error(handler, 401, "RepoNotFound", head=head)
            return None
        auth = handler.headers.get("Authorization", "")
        if state.token is not None and auth != f"Bearer {state.token}":
            if auth:
                self._error(
                    handler, 401, None, "Invalid credentials in Authorization header", head=head
                )
            else:
                self._error(handler, 401, "RepoNotFound", head=head)
            return None
        if state.gated:
            self._error(handler, 403, "GatedRepo", "Access to this repo is restricted", head=head)
            return None
        return state

    def _commit(self, state: _Repo, revision: str) -> str | None:
        if revision in state.commits:
            return revision
        return state.branches.get(revision)

    def handle(self, handler: BaseHTTPRequestHandler, head: bool) -> None:
        path = handler.path.split("?", 1)[0]
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[:1] == ["api"]:
            self.count("HEAD" if head else "GET", path)
            return self._api_get(handler, parts[1:], head)
        _repo_type, repo, rest = self._split_repo(parts)
        if len(rest) < 3 or rest[0] != "resolve":
            return self._error(handler, 404, None, "no such route", head=head)
        revision, file_path = rest[1], "/".join(rest[2:])
        self.count("HEAD" if head else "GET", file_path)
        state = self._authorise(handler, repo, head)
        if state is None:
            return None
        commit = self._commit(state, revision)
        if commit is None:
            return self._error(handler, 404, "RevisionNotFound", head=head)
        files = state.commits[commit]
        if file_path not in files:
            return self._error(handler, 404, "EntryNotFound", head=head, commit=commit)
        data, lfs = files[file_path]
        headers = {"X-Repo-Commit": commit}
        if lfs:
            sha = hashlib.sha256(data).hexdigest()
            headers.update(
                {"ETag": f'"{sha}"', "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data))}
            )
        else:
            headers["ETag"] = f'"{git_blob_oid(data)}"'
        with self._lock:
            drop = None if head else self.drop_after.pop(file_path, self.drop_every.get(file_path))
            if not head:
                self.ranges.append((file_path, handler.headers.get("Range")))
        served = self.corrupt.get(file_path, data)
        serve_bytes(handler, served, head=head, drop_after=drop, headers=headers, rate=self.rate)
        return None

    def _api_get(self, handler: BaseHTTPRequestHandler, parts: list[str], head: bool) -> None:
        # /api/{models|datasets}/{ns}/{name}/revision/{revision}
        if (
            len(parts) >= 5
            and parts[0] in ("models", "datasets", "spaces")
            and parts[3] == "revision"
        ):
            repo = "/".join(parts[1:3])
            revision = "/".join(parts[4:])
            state = self._authorise(handler, repo, head)
            if state is None:
                return
            commit = self._commit(state, revision)
            if commit is None:
                return self._error(handler, 404, "RevisionNotFound", head=head)
            info = {
                "id": repo,
                "sha": commit,
                "private": state.token is not None,
                "siblings": [{"rfilename": p} for p in sorted(state.commits[commit])],
            }
            return self._json(handler, info, head)
        return self._error(handler, 404, None, "no such route", head=head)

    def handle_post(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?", 1)[0]
        self.count("POST", path)
        parts = [unquote(p) for p in path.strip("/").split("/")]
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode()
        # /api/{models|datasets}/{ns}/{name}/paths-info/{revision}
        if not (len(parts) >= 6 and parts[0] == "api" and parts[4] == "paths-info"):
            return self._error(handler, 404, None, "no such route")
        repo = "/".join(parts[2:4])
        revision = "/".join(parts[5:])
        state = self._authorise(handler, repo, False)
        if state is None:
            return None
        commit = self._commit(state, revision)
        if commit is None:
            return self._error(handler, 404, "RevisionNotFound")
        wanted = parse_qs(body).get("paths", [])
        files = state.commits[commit]
        answer = []
        for name in wanted:
            if name not in files:
                continue  # the Hub ignores paths that do not exist
            data, lfs = files[name]
            row = {"type": "file", "path": name, "size": len(data), "oid": git_blob_oid(data)}
            if lfs:
                row["lfs"] = {
                    "oid": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                    "pointerSize": 134,
                }
            answer.append(row)
        return self._json(handler, answer, False)

    def _json(self, handler: BaseHTTPRequestHandler, data, head: bool) -> None:
        body = json.dumps(data).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if not head:
            handler.wfile.write(body)
