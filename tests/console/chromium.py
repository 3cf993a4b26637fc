"""Debian's Chromium for Playwright: where it is and the flags it needs here (root, no GPU, offline).

Playwright is pointed at /usr/bin/chromium (installed by scripts/bootstrap.sh); it never downloads a
browser. Playwright gives every launch a fresh temporary profile (the `--user-data-dir` of its own),
so no state leaks between runs. Shared by tests/console and bench/console_bench.py.
"""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"

FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container: the sandbox needs user namespaces we do not have
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_args() -> list[str]:
    return list(FLAGS)
