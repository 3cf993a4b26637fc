"""The console in a real browser (Debian's Chromium, driven by Playwright) against the local plane.

One plane for the module, with the operator: two real TrainingJobs of model `digits` train and
register two ModelVersions. The console (`modelops console --kubeconfig ...`, as a user starts it) is
looked at as a user looks at it:

- the loss curve of the running job gains points while it trains, without a reload;
- the two versions compare side by side;
- a rolled-back canary shows each failed analysis. A real rollback needs serving pods, load and
  several analysis intervals (tests/e2e/test_inferenceservice_e2e.py does it, and the controller's
  unit tests show that each interval lands in `status.rolloutHistory[].analyses`); here its status
  is written through the API's status subresource, on an InferenceService whose model does not
  exist, so the operator keeps that history as it is;
- a TuningJob of two trials (run by the real operator: 3 epochs each, no pruner) shows the
  leaderboard `kubectl get tuningjobs` sums up, each trial linked to its TrainingJob page and one
  point per trial on the objective-vs-parameter charts;
- the keyboard reaches every link; nothing needs a wide screen (375 px, no horizontal scroll).

Screenshots of the main pages are written to $CONSOLE_SCREENSHOTS when it is set
(docs/console/ holds the ones docs/console.md shows).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "e2e"), str(Path(__file__).parent)]
from chromium import CHROMIUM, chromium_args  # noqa: E402
from localplane import Plane  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SHOTS = os.environ.get("CONSOLE_SCREENSHOTS")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def job(name: str, epochs: int, learning_rate: float) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((REPO / "examples/quickstart/10-trainingjob.yaml").read_text())
    manifest["metadata"]["name"] = name
    spec = manifest["spec"]
    spec.pop("backup", None)
    spec["hyperparameters"].update(epochs=epochs, learningRate=learning_rate)
    spec["resources"] = {"cpu": "500m", "memory": "1Gi"}
    spec["checkpoint"] = {"intervalSeconds": 10}
    return manifest


def tuning_job() -> dict[str, Any]:
    """examples/tuning/ made tiny: two trials side by side, 3 epochs each, nothing registered."""
    manifest: dict[str, Any] = yaml.safe_load((REPO / "examples/tuning/digits-search.yaml").read_text())
    manifest["metadata"]["name"] = "digits-tune"
    spec = manifest["spec"]
    spec.update(
        maxTrials=2,
        parallelTrials=2,
        algorithm={"name": "random", "seed": 7},
        pruner={"name": "none"},
        cleanupPolicy="keepAll",
    )
    for key in ("keepBestTrials", "registration"):
        spec.pop(key, None)
    template = spec["trialTemplate"]["spec"]
    template["hyperparameters"]["epochs"] = 3
    template["resources"] = {"cpu": "500m", "memory": "1Gi"}
    return manifest


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    lp = Plane(tmp_path_factory.mktemp("console") / "plane")
    lp.modelops("local", "up", "--dir", str(lp.dir))
    try:
        # Two runs of model digits: a long one to watch, a short one to compare with.
        lp.kubectl("apply", "-f", "-", input=json.dumps(job("digits-long", 20, 0.002)))
        lp.kubectl("apply", "-f", "-", input=json.dumps(job("digits-short", 3, 0.0005)))
        lp.kubectl("apply", "-f", "-", input=json.dumps(tuning_job()))
        yield lp
    finally:
        lp.modelops("local", "down", "--dir", str(lp.dir), check=False)


@pytest.fixture(scope="module")
def console(plane: Plane) -> Iterator[str]:
    port = free_port()
    log = plane.dir / "console.log"
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelops",
                "console",
                "--kubeconfig",
                str(plane.dir / "kubeconfig"),
                "--port",
                str(port),
                "--interval",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail(f"the console did not answer on {url}:\n{log.read_text()}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/bootstrap.sh (it installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=chromium_args())
        yield launched
        launched.close()


def shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def no_horizontal_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.evaluate("window.innerWidth"), f"{page.url} is {width}px wide at 375px"


def test_the_loss_curve_gains_points_while_the_job_trains(plane: Plane, console: str, browser: Any) -> None:
    plane.wait_for(
        "digits-long to train",
        lambda: len(plane.get("trainingjob", "digits-long").get("status", {}).get("history") or []) >= 2,
        timeout=150,
    )
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(f"{console}/ns/default/trainingjobs/digits-long")

    def points() -> int:
        """Vertices of the training-loss line in the SVG, as the browser has it now."""
        count = page.evaluate(
            """() => {
              const line = document.querySelector('#loss-chart g[data-series="loss"] polyline');
              return line ? line.points.numberOfItems : 0;
            }"""
        )
        return int(count)

    first = points()
    assert first >= 2
    page.evaluate("window.__notReloaded = true")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and points() <= first:
        page.wait_for_timeout(500)
    second = points()
    assert second > first, f"the curve stayed at {first} points"
    assert page.evaluate("window.__notReloaded === true")  # updated in place, no reload
    assert "Live updates: on" in page.locator("#live").inner_text()
    assert page.locator("progress#progress").count() == 1
    page.close()


def test_two_versions_compare_side_by_side(plane: Plane, console: str, browser: Any) -> None:
    for name in ("digits-long", "digits-short"):
        plane.kubectl(
            "wait", f"trainingjob/{name}", "--for=condition=Succeeded", "--timeout=300s", timeout=310
        )
    plane.wait_for(
        "two Ready versions of digits",
        lambda: (
            sum(
                1
                for mv in plane.get("modelversions")["items"]
                if mv.get("status", {}).get("phase") == "Ready" and mv["status"].get("metrics")
            )
            == 2
        ),
        timeout=120,
    )
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(f"{console}/ns/default/models/digits")
    table = page.locator("table.compare-table")
    headers = table.locator("thead th").all_inner_texts()
    assert headers[1:] == ["v1", "v2"]
    accuracy = table.locator("tbody tr", has_text="accuracy").first.locator("td").all_inner_texts()
    assert len(accuracy) == 2 and all(cell.strip() != "—" for cell in accuracy)
    assert sum("★" in cell for cell in accuracy) == 1  # the better one is marked
    assert page.locator("#compare-chart rect.bar").count() >= 2 * 2
    assert page.locator("ol.lineage li").count() == 2
    shot(page, "model")
    page.goto(f"{console}/ns/default/trainingjobs/digits-long")  # the whole curve, for the docs
    shot(page, "trainingjob")
    # Pick one version: a URL one can share.
    page.goto(f"{console}/ns/default/models/digits?v=digits-2")
    assert page.locator("table.compare-table thead th").all_inner_texts()[1:] == ["v2"]
    page.close()


def test_a_rolled_back_canary_shows_its_failed_analyses(plane: Plane, console: str, browser: Any) -> None:
    isvc = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "rolled-back"},
        "spec": {"modelRef": {"model": "ghost", "version": 1}},
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(isvc))
    plane.wait_for(
        "the operator to look at it",
        lambda: plane.get("inferenceservice", "rolled-back").get("status", {}).get("conditions"),
        timeout=60,
    )
    failed = "success rate 0.{:04d} below minSuccessRate 0.95"
    record = {
        "modelVersion": "ghost-2",
        "version": 2,
        "startTime": "2026-12-07T10:00:00Z",
        "endTime": "2026-12-07T10:00:10Z",
        "outcome": "RolledBack",
        "trigger": "canary",
        "replaced": "ghost-1",
        "reason": "2 failed analyses (failureLimit 2); last: " + failed.format(4100),
        "analyses": [
            {
                "lastCheckTime": "2026-12-07T10:00:05Z",
                "result": "Failed",
                "message": failed.format(3800),
                "requests": 21,
                "successRate": 0.38,
                "trafficPercent": 50,
            },
            {
                "lastCheckTime": "2026-12-07T10:00:10Z",
                "result": "Failed",
                "message": failed.format(4100),
                "requests": 17,
                "successRate": 0.41,
                "trafficPercent": 50,
            },
        ],
    }
    plane.kubectl(
        "patch",
        "inferenceservice",
        "rolled-back",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"rolloutHistory": [record]}}),
    )
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(f"{console}/ns/default/inferenceservices/rolled-back")
    rollout = page.locator("article.rollout").first
    assert "RolledBack" in rollout.locator("h3").inner_text()
    rows = rollout.locator("table.analyses tbody tr")
    assert rows.count() == 2
    assert [rows.nth(i).locator("td").nth(0).inner_text() for i in range(2)] == ["Failed", "Failed"]
    assert "0.38" in rows.nth(0).inner_text() and "21" in rows.nth(0).inner_text()
    shot(page, "inferenceservice")
    page.close()


def test_the_tuning_leaderboard_matches_kubectl_and_links_each_trial(
    plane: Plane, console: str, browser: Any
) -> None:
    plane.kubectl("wait", "tuningjob/digits-tune", "--for=condition=Succeeded", "--timeout=300s", timeout=310)
    # What `kubectl get tuningjobs` prints (its printer columns), read as a user reads it.
    printed = printer_columns(plane.kubectl("get", "tuningjobs", "digits-tune", "-o", "wide"))
    assert printed["DONE"] == "2"
    trials = plane.get("tuningjob", "digits-tune")["status"]["trials"]
    assert {t["state"] for t in trials} == {"Complete"}
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(f"{console}/ns/default/tuningjobs/digits-tune")
    facts = page.locator("dl.facts").first.inner_text()
    assert f"{float(printed['BEST']):.4g} ({printed['BEST-TRIAL']})" in facts
    rows = page.locator("table.leaderboard tbody tr")
    assert rows.count() == 2
    first = rows.nth(0).locator("th, td").all_inner_texts()
    assert first[0] == "1" and first[1] == printed["BEST-TRIAL"]
    assert first[3] == f"{float(printed['BEST']):.4g}"
    # One point per scored trial on each parameter's chart; learningRate is searched on a log scale.
    for param in ("learningRate", "hiddenSize"):
        assert page.locator(f'#param-{param} g[data-series="scored"] circle').count() == 2
    assert "log scale" in page.locator("#param-learningRate").text_content()
    shot(page, "tuningjob")
    # A trial's name leads to its TrainingJob page, and that page leads back to the search.
    rows.nth(1).locator("a").click()
    page.wait_for_url(f"**/ns/default/trainingjobs/{rows_second_name(trials, printed['BEST-TRIAL'])}")
    assert page.locator("h1").inner_text().startswith("digits-tune-trial-")
    page.get_by_role("link", name="digits-tune", exact=True).click()
    page.wait_for_url("**/ns/default/tuningjobs/digits-tune")
    page.close()


def printer_columns(table: str) -> dict[str, str]:
    """kubectl's table, one object: each column's cell cut at the header's offsets (cells may be empty)."""
    header, row = table.splitlines()[:2]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    ends = [*starts[1:], len(row)]
    return {header[a:b].strip(): row[a:b].strip() for a, b in zip(starts, ends, strict=True)}


def rows_second_name(trials: list[dict[str, Any]], best: str) -> str:
    (other,) = [t["name"] for t in trials if t["name"] != best]
    return str(other)


def test_every_link_is_reached_by_keyboard_and_nothing_needs_a_wide_screen(
    plane: Plane, console: str, browser: Any
) -> None:
    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.goto(f"{console}/")
    links = set(page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))"))
    assert {"/ns/default/trainingjobs/digits-long", "/ns/default/models/digits#digits-1"} <= links
    reached: set[str] = set()
    for _ in range(len(links) * 3 + 20):
        page.keyboard.press("Tab")
        href = page.evaluate("document.activeElement && document.activeElement.getAttribute('href')")
        if href:
            reached.add(href)
        if reached >= links:
            break
    assert links - reached == set(), f"not reachable by Tab: {sorted(links - reached)}"
    # The focused element is visibly outlined.
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    shot(page, "overview-375px")
    for path in (
        "/",
        "/backups",
        "/ns/default/trainingjobs/digits-long",
        "/ns/default/models/digits",
        "/ns/default/inferenceservices/rolled-back",
        "/ns/default/tuningjobs/digits-tune",
    ):
        page.goto(console + path)
        no_horizontal_scroll(page)
    page.set_viewport_size({"width": 1100, "height": 900})
    page.goto(f"{console}/")
    shot(page, "overview")
    page.close()
