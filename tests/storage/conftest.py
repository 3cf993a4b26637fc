"""Fixtures of the storage tests: one real S3-compatible server (moto, IAM auth on) per session.

Other test directories reuse it the same way: put `tests/storage` on `sys.path` and call
`s3server.S3Server.start()` in a session fixture (see s3server.py for the API).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from s3server import S3Server


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    server = S3Server.start()
    try:
        yield server
    finally:
        server.stop()
