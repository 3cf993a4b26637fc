"""`GET pods/{name}/log`: container logs from the files the kubelet writes (see the shared design):
`DIR/pods/<ns>/<pod>/<uid>/<container>/<restartCount>.log`, one file per container run.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from . import errors
from .api import Api
from .store import meta

POLL_SECONDS = 0.1


def _runs(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    files = [p for p in directory.glob("*.log") if p.stem.isdigit()]
    return sorted(files, key=lambda p: int(p.stem))


def _terminated(pod: dict[str, Any] | None, container: str, run: int) -> bool:
    """Whether this run of the container has ended (or the pod is gone), so follow can stop."""
    if pod is None:
        return True
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return True
    for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        if cs.get("name") != container:
            continue
        if int(cs.get("restartCount", 0)) > run:
            return True
        return "terminated" in (cs.get("state") or {})
    return False


def _select(data: bytes, tail: int | None, since: float | None, mtime: float, stamps: bool) -> bytes:
    lines = data.splitlines(keepends=True)
    if since is not None and mtime < time.time() - since:
        lines = []
    if tail is not None:
        lines = lines[-tail:] if tail > 0 else []
    if stamps:
        stamp = (
            datetime.datetime.fromtimestamp(mtime, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ ").encode()
        )
        lines = [stamp + line for line in lines]
    return b"".join(lines)


async def serve(request: web.Request, api: Api, data_dir: Path, ns: str, name: str) -> web.StreamResponse:
    pod = api.store.get("/pods", ns, name)
    if pod is None:
        raise errors.not_found("", "pods", name)
    q = request.query
    containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    init = [c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or []]
    container = q.get("container")
    if not container:
        if len(containers) != 1:
            raise errors.bad_request(
                f"a container name must be specified for pod {name}, choose one of: [{' '.join(map(str, containers))}]"
                + (f" or one of the init containers: [{' '.join(map(str, init))}]" if init else "")
            )
        container = str(containers[0])
    if container not in containers and container not in init:
        raise errors.bad_request(f"container {container} is not valid for pod {name}")
    uid = meta(pod).get("uid", "")
    runs = _runs(data_dir / "pods" / ns / name / uid / container)
    previous = q.get("previous") in ("true", "1")
    if previous:
        if len(runs) < 2:
            raise errors.bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        path = runs[-2]
    elif not runs:
        raise errors.bad_request(
            f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
        )
    else:
        path = runs[-1]
    tail = int(q["tailLines"]) if q.get("tailLines") else None
    since = float(q["sinceSeconds"]) if q.get("sinceSeconds") else None
    stamps = q.get("timestamps") in ("true", "1")
    limit = int(q["limitBytes"]) if q.get("limitBytes") else None
    data = path.read_bytes()
    first = _select(data, tail, since, path.stat().st_mtime, stamps)
    if limit is not None:
        first = first[:limit]
    follow = q.get("follow") in ("true", "1") and not previous
    if not follow:
        return web.Response(body=first, content_type="text/plain")
    resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    run = int(path.stem)
    offset = len(data)
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await resp.write(first)
        while True:
            done = _terminated(api.store.get("/pods", ns, name), container, run)
            with path.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            if chunk:
                offset += len(chunk)
                await resp.write(_select(chunk, None, None, time.time(), stamps))
            if done:
                break
            await asyncio.sleep(POLL_SECONDS)
        await resp.write_eof()
    return resp
