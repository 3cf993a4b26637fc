"""A kube-proxy for one machine: TCP listeners on Service ClusterIPs that forward to ready endpoints.

The API server hands out ClusterIPs from 127.96.0.0/16, and the whole of 127.0.0.0/8 is loopback on
Linux, so the proxy can listen on `clusterIP:port` directly. Each new connection goes to the next ready
endpoint (round robin, skipping ones that refuse); with none ready the client's connection is closed at
once, which is what a client of a real Service with no endpoints sees as a reset. Headless Services
get no listener (their names resolve to pod IPs). A `nodePort` the user sets is also served on the
node's address, 127.0.0.1 (the API server does not allocate node ports, so only explicit ones); a
LoadBalancer Service is given its ClusterIP as its load-balancer ingress address (see `endpoints`).
Only TCP is proxied.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass, field
from typing import Any

from . import common as c
from .actions import ENDPOINTS, SERVICES, Result
from .endpoints import backends
from .store import Store

log = logging.getLogger(__name__)

Obj = dict[str, Any]
_CONNECT_TIMEOUT = 3.0
_CHUNK = 64 * 1024
_REFUSE_DRAIN = 1.0
NODE_IP = "127.0.0.1"
_RETRY_BIND = 5.0


@dataclass
class _Listener:
    namespace: str
    service: str
    port_name: str
    server: asyncio.Server
    counter: int = 0
    connections: set[asyncio.Task[None]] = field(default_factory=set)


def desired_listeners(services: list[Obj]) -> dict[tuple[str, int], tuple[str, str, str]]:
    """(clusterIP, port) -> (namespace, service, port name) for every TCP port of every ClusterIP."""
    out: dict[tuple[str, int], tuple[str, str, str]] = {}
    for svc in services:
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None" or spec.get("type") == "ExternalName" or c.is_deleting(svc):
            continue
        for port in spec.get("ports") or []:
            if port.get("protocol", "TCP") != "TCP" or not port.get("port"):
                continue
            who = (c.namespace_of(svc), c.name_of(svc), port.get("name") or "")
            out[(str(ip), int(port["port"]))] = who
            if spec.get("type") in ("NodePort", "LoadBalancer") and port.get("nodePort"):
                out[(NODE_IP, int(port["nodePort"]))] = who
    return out


class ServiceProxy:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.listeners: dict[tuple[str, int], _Listener] = {}
        self._failed: set[tuple[str, int]] = set()

    async def sync(self, store: Store) -> list[Result]:
        want = desired_listeners(store.list(SERVICES))
        for addr in [a for a in self.listeners if want.get(a) != self._identity(a)]:
            await self._close(addr)
        for addr, (ns, svc, port_name) in want.items():
            if addr in self.listeners:
                continue
            try:
                server = await asyncio.start_server(
                    functools.partial(self._accept, addr), host=addr[0], port=addr[1], reuse_address=True
                )
            except OSError as e:
                if addr not in self._failed:
                    log.warning("service %s/%s: cannot listen on %s:%d: %s", ns, svc, addr[0], addr[1], e)
                    self._failed.add(addr)
                continue
            self._failed.discard(addr)
            self.listeners[addr] = _Listener(ns, svc, port_name, server)
            log.info("proxying %s:%d for service %s/%s", addr[0], addr[1], ns, svc)
        self._failed &= set(want)
        retry = Result()
        if self._failed:
            # Someone else holds the address (another plane on this machine, say): try again later.
            retry.requeue(_RETRY_BIND)
        return [retry]

    def _identity(self, addr: tuple[str, int]) -> tuple[str, str, str]:
        lst = self.listeners[addr]
        return lst.namespace, lst.service, lst.port_name

    async def _close(self, addr: tuple[str, int]) -> None:
        lst = self.listeners.pop(addr)
        lst.server.close()
        for task in list(lst.connections):
            task.cancel()
        with contextlib.suppress(Exception):
            await lst.server.wait_closed()

    async def close(self) -> None:
        for addr in list(self.listeners):
            await self._close(addr)

    def pick(self, addr: tuple[str, int]) -> list[tuple[str, int]]:
        """Ready backends in the order to try them: round robin from the listener's counter."""
        lst = self.listeners.get(addr)
        if lst is None:
            return []
        found = backends(self.store.get(ENDPOINTS, lst.namespace, lst.service), lst.port_name)
        if not found:
            return []
        start = lst.counter % len(found)
        lst.counter += 1
        return found[start:] + found[:start]

    async def _accept(
        self, addr: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        lst = self.listeners.get(addr)
        task = asyncio.current_task()
        if lst is not None and task is not None:
            lst.connections.add(task)
        try:
            await self._serve(addr, reader, writer)
        finally:
            if lst is not None and task is not None:
                lst.connections.discard(task)

    async def _serve(
        self, addr: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for host, port in self.pick(addr):
            try:
                upstream = await asyncio.wait_for(asyncio.open_connection(host, port), _CONNECT_TIMEOUT)
                break
            except (OSError, TimeoutError) as e:
                log.debug("backend %s:%d of %s:%d refused: %s", host, port, addr[0], addr[1], e)
        if upstream is None:
            await _refuse(reader, writer)
            return
        up_reader, up_writer = upstream
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True)
        finally:
            await _close(up_writer)
            await _close(writer)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        # Half-close so the other side sees EOF but can still answer (HTTP/1.0 clients rely on it).
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, ConnectionError):
        writer.close()


async def _refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Send FIN first and drain what the client already sent: closing with unread input would make
    # the kernel answer with a reset, which clients report as an error rather than an empty answer.
    with contextlib.suppress(OSError, ConnectionError):
        if writer.can_write_eof():
            writer.write_eof()
    with contextlib.suppress(OSError, ConnectionError, TimeoutError):
        async with asyncio.timeout(_REFUSE_DRAIN):
            while await reader.read(_CHUNK):
                pass
    await _close(writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
