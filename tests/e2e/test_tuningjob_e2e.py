"""A TuningJob searching the quickstart recipe for real on the local plane, as a user drives it.

One plane: the quickstart's defaults are trained once as a plain TrainingJob (the baseline), then
`examples/tuning/digits-search.yaml` (shortened) searches learning rate and width with TPE and the
median pruner, two trials at a time. Midway the operator is killed with SIGKILL and `modelops local
up` starts it again: the search resumes from what the cluster holds, with every trial number used
once and none lost. The search must find a configuration at least as good as the defaults, record a
pruned trial, register the best as a ModelVersion, and make only the API calls its RBAC grants.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localplane import Plane, operator_calls, ungranted

from modelops.status import kstatus

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e

# Small batches and enough epochs that a trial runs for several of the operator's ~2 s scrapes even on
# an idle machine: pruning compares epochs it has observed (8 epochs of 64 ended between two scrapes there).
EPOCHS = 24
BATCH = 16
TRIALS = 6


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    lp = Plane(tmp_path_factory.mktemp("tuning") / "plane")
    lp.modelops("local", "up", "--dir", str(lp.dir), "--nodes", "2")
    try:
        yield lp
    finally:
        lp.modelops("local", "down", "--dir", str(lp.dir), check=False)


def search() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "examples" / "tuning" / "digits-search.yaml").read_text())
    template = doc["spec"]["trialTemplate"]["spec"]
    template["hyperparameters"].update(epochs=EPOCHS, batchSize=BATCH)
    template["resources"] = {"cpu": "500m", "memory": "1Gi"}
    # Learning rates from 1e-4 (too slow to learn much in a few epochs: what the pruner must stop) to 4e-3,
    # widths from the quickstart's 128 up. A seeded search proposes the same trials again
    # (tests/unit/test_tuningjob.py); with seed 86 Optuna's three random startup trials have learning
    # rates 0.0026, 0.0018 and 0.0002, so a slow trial starts once another has finished and can be
    # compared with it, and the run takes the same course on a loaded machine as on an idle one.
    doc["spec"]["searchSpace"][0].update(low=0.0001, high=0.004)
    doc["spec"]["searchSpace"][1].update(low=128, high=256)
    doc["spec"]["algorithm"].update(seed=86, startupTrials=3)
    doc["spec"]["pruner"] = {"name": "median", "startupTrials": 1, "warmupSteps": 0}
    doc["spec"]["cleanupPolicy"] = "keepAll"
    doc["spec"]["maxTrials"] = TRIALS
    return doc


def baseline() -> dict[str, Any]:
    """The quickstart's defaults, trained the same way as the trials."""
    job: dict[str, Any] = yaml.safe_load(
        (REPO / "examples" / "quickstart" / "10-trainingjob.yaml").read_text()
    )
    job["metadata"]["name"] = "baseline"
    job["spec"].pop("backup", None)
    job["spec"]["output"] = {"createModelVersion": False}
    job["spec"]["hyperparameters"].update(epochs=EPOCHS, batchSize=BATCH)
    job["spec"]["resources"] = {"cpu": "500m", "memory": "1Gi"}
    return job


# About 2.5 minutes on an idle machine (six trials two at a time, plus the baseline); several times
# that when the machine is shared, so the suite's 300 s limit is raised for this one test.
@pytest.mark.timeout(900)
def test_search_beats_the_defaults_prunes_and_survives_an_operator_kill(plane: Plane) -> None:
    plane.kubectl("apply", "-f", "-", input=json.dumps(baseline()))
    plane.kubectl("apply", "-f", "-", input=json.dumps(search()))
    started = time.monotonic()

    def tuning() -> dict[str, Any]:
        return dict(plane.get("tuningjob", "digits-search"))

    plane.wait_for(
        "a third trial created", lambda: (tuning().get("status") or {}).get("trialsCreated", 0) >= 3, 240
    )
    # SIGKILL the operator mid-search, then start it again the way `local up` does.
    pid = int((plane.dir / "run" / "operator.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    time.sleep(1)
    plane.modelops("local", "up", "--dir", str(plane.dir), "--nodes", "2")

    plane.kubectl(
        "wait", "tuningjob/digits-search", "--for=condition=Succeeded", "--timeout=720s", timeout=730
    )
    took = time.monotonic() - started
    st = tuning()["status"]
    trials = plane.get("trainingjobs", "-l", "modelops.dev/tuningjob=digits-search")["items"]
    names = sorted(t["metadata"]["name"] for t in trials)
    # Every trial number once, none lost, all owned by the search.
    assert names == sorted(f"digits-search-trial-{n}" for n in range(TRIALS)), names
    assert [r["number"] for r in st["trials"]] == list(range(TRIALS))
    assert st["trialsCreated"] == TRIALS and st["trialsRunning"] == 0
    assert all(t["metadata"]["ownerReferences"][0]["kind"] == "TuningJob" for t in trials)

    # Pruning observed: a trial recorded pruned, its TrainingJob suspended by the operator.
    pruned = [r for r in st["trials"] if r["state"] == "Pruned"]
    assert pruned and st["trialsPruned"] == len(pruned), st["trials"]
    by_name = {t["metadata"]["name"]: t for t in trials}
    assert by_name[pruned[0]["name"]]["spec"]["runPolicy"]["suspend"] is True
    events = plane.get("events", "--field-selector", "involvedObject.name=digits-search")["items"]
    reasons = {e["reason"] for e in events}
    assert {"TrialPruned", "MaxTrialsReached"} <= reasons, reasons

    # At least as good as the quickstart's defaults trained the same way in this run.
    plane.kubectl("wait", "trainingjob/baseline", "--for=condition=Succeeded", "--timeout=120s", timeout=130)
    default_accuracy = plane.get("trainingjob", "baseline")["status"]["metrics"]["accuracy"]
    assert st["bestValue"] >= default_accuracy, (st["bestValue"], default_accuracy, st["leaderboard"])
    assert st["leaderboard"][0] == st["bestTrial"] and len(st["leaderboard"]) <= 5
    assert kstatus(st, tuning()["metadata"]["generation"]) == "Current"

    # The best trial's model is registered, with its parameters and the search in its lineage.
    plane.wait_for(
        "the best trial registered", lambda: (tuning().get("status") or {}).get("modelVersion"), 60
    )
    mv = plane.get("modelversion", tuning()["status"]["modelVersion"])
    assert mv["spec"]["source"]["trainingJob"]["name"] == st["bestTrial"]["name"]
    assert mv["spec"]["tags"]["modelops.dev/tuningjob"] == "digits-search"
    assert "hyperparameter.learningRate" in mv["spec"]["tags"]

    printed = plane.kubectl("get", "tune", "digits-search")
    assert "Succeeded" in printed and "BEST" in printed
    assert ungranted(operator_calls(plane.dir)) == []
    print(f"search took {took:.0f}s; best {st['bestValue']:.4f} vs default {default_accuracy:.4f}")
