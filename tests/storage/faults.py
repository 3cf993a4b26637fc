"""A TCP proxy in front of the S3 server that injects the faults real networks have.

Mocks are for fault injection only: the proxy forwards real bytes between the real client (obstore)
and the real server (moto), and on demand answers `503 Slow Down` instead of forwarding, or cuts a
response off after some bytes (a connection lost mid-object).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class Faults:
    """What the proxy does to the next connections (each counter is consumed as it fires)."""

    slow_down: int = 0  # answer this many requests with 503 SlowDown, then forward
    cut_after: int | None = None  # cut responses larger than this many bytes ...
    cuts: int = 0  # ... this many times
    requests: int = 0  # requests seen (each first packet of a connection's request)
    lock: threading.Lock = field(default_factory=threading.Lock)


_SLOW_DOWN = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: 96\r\n"
    b"Connection: close\r\n\r\n"
    b"<?xml version='1.0'?><Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>  "
)


class FaultProxy:
    """Listens on 127.0.0.1:<port> and forwards to `target_port`, one connection per client connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.faults = Faults()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop = True
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        state = {"budget": None}

        def pump_up() -> None:
            try:
                while data := client.recv(65536):
                    with self.faults.lock:
                        if data[:4] in (b"GET ", b"PUT ", b"HEAD", b"POST", b"DELE"):
                            self.faults.requests += 1
                            if self.faults.slow_down > 0:
                                self.faults.slow_down -= 1
                                client.sendall(_SLOW_DOWN)
                                client.close()
                                upstream.close()
                                return
                            if self.faults.cuts > 0 and data.startswith(b"GET "):
                                self.faults.cuts -= 1
                                state["budget"] = self.faults.cut_after
                    upstream.sendall(data)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    upstream.shutdown(socket.SHUT_WR)

        threading.Thread(target=pump_up, daemon=True).start()
        sent = 0
        try:
            while data := upstream.recv(65536):
                budget = state["budget"]
                if budget is not None and sent + len(data) > budget:
                    client.sendall(data[: max(0, budget - sent)])
                    # The connection drops mid-body (shutdown wakes the other thread's recv too).
                    for sock in (client, upstream):
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                    break
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()
