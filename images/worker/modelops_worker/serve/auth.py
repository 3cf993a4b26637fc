"""Bearer-token authentication of inference requests, from a file of accepted tokens.

The file is the key of the InferenceService's auth Secret, mounted into the pod: one token per line,
blank lines ignored. It is re-read when it changes (a rotated Secret reaches the pod without a
restart). Tokens are compared in constant time and never logged; the health and metrics endpoints
stay open so probes and Prometheus need no token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from pathlib import Path

log = logging.getLogger("modelops_worker.serve")

# How often the file's modification time is checked, at most.
_RECHECK_SECONDS = 2.0


class TokenFile:
    """The accepted tokens, kept as sha256 digests (the plain tokens are not kept in memory)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._digests: list[bytes] = []
        self._mtime = -1.0
        self._checked = 0.0
        self.reload()
        if not self._digests:
            log.warning("auth tokens file %s holds no token: every inference request gets 401", path)

    def reload(self) -> None:
        """Read the file; raises OSError when it cannot be read."""
        st = self.path.stat()
        text = self.path.read_text(encoding="utf-8")
        self._digests = [_digest(line.strip()) for line in text.splitlines() if line.strip()]
        self._mtime = st.st_mtime
        log.info("auth: %d accepted token(s) from %s", len(self._digests), self.path)

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < _RECHECK_SECONDS:
            return
        self._checked = now
        try:
            if self.path.stat().st_mtime != self._mtime:
                self.reload()
        except OSError as exc:
            # Keep the tokens we have: a Secret update swaps a symlink and may briefly show nothing.
            log.warning("auth tokens file %s unreadable (%s); keeping the previous tokens", self.path, exc)

    def accepts(self, authorization: str | None) -> bool:
        """Whether an `Authorization` header value carries an accepted bearer token."""
        self._maybe_reload()
        if not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        given = _digest(token.strip())
        ok = False
        for d in self._digests:  # no early exit: the time taken does not say which token matched
            ok |= hmac.compare_digest(given, d)
        return ok


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
