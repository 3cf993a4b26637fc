"""Two operators, one Lease: the active one is killed and the standby takes over without duplicates.

On a real local API server with the real kubectl and two real `modelops operator --leader-elect`
processes, with client-go's default timing (lease 15s, renew deadline 10s, retry 2s):

1. the first holds the Lease and reconciles; the second stands by (ready, but `modelops_operator_leader 0`);
2. `kill -9` of the leader: the standby acquires the Lease within the lease duration and reconciles a
   newly applied TrainingJob; every TrainingJob has exactly its own children (counted with kubectl);
3. a clean stop (SIGTERM) releases the Lease, so a third replica takes over within a retry period;
4. a leader whose Lease is taken from it stops at once (exit code 3) after the renew deadline.

The failover times printed here are the ones recorded in docs/install.md (HA section).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelops.api.common import NAME_LIMITS
from modelops.controllers import leader
from modelops.controllers.entrypoint import LOST_LEADERSHIP_EXIT
from modelops.controllers.leader import LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
NS = "default"
LEASE = "modelops-operator"
# What a loaded CI machine may add to a takeover on top of the protocol's own bound.
SLACK = 15.0


def trainingjob(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "modelops.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": NS},
            # Two ranks: two pods, one headless Service, one claim; pods stay Pending (no nodes here).
            "spec": {
                "model": {"architecture": "mlp"},
                "dataset": {"builtin": "digits"},
                "distributed": {"nodes": 2},
            },
        }
    )


def holder(plane: Any) -> str:
    out = plane.kubectl("get", "lease", LEASE, "-n", NS, "-o", "json", check=False)
    try:
        return str(json.loads(out)["spec"].get("holderIdentity") or "")
    except (ValueError, KeyError):
        return ""


def children(plane: Any, job: str) -> dict[str, int]:
    selector = f"modelops.dev/trainingjob={job}"
    return {
        "pods": len(plane.get("pods", "-n", NS, "-l", selector)["items"]),
        "services": len(plane.get("services", "-n", NS, "-l", selector)["items"]),
        "claims": len(plane.get("persistentvolumeclaims", "-n", NS, "-l", selector)["items"]),
    }


EXPECTED = {"pods": 2, "services": 1, "claims": 1}


def leader_gauge(operator: Any) -> str:
    _, text = operator.http("/metrics")
    return next(
        (line.split()[-1] for line in text.splitlines() if line.startswith("modelops_operator_leader ")), ""
    )


def test_standby_takes_over_from_a_killed_leader_without_duplicates(
    plane: Any, start_operator: Callable[..., Any], wait: Callable[..., None]
) -> None:
    plane.kubectl("apply", "-f", str(REPO / "crds"))

    def elect(identity: str) -> Any:
        return start_operator(
            plane, "--leader-elect", "--leader-election-namespace", NS, "--leader-election-identity", identity
        )

    first = elect("op-a")
    wait("op-a to acquire the Lease", lambda: holder(plane) == "op-a", log=first.log)
    second = elect("op-b")
    wait(
        "op-b to stand by",
        lambda: "standing by, op-a holds the Lease" in second.log.read_text(),
        log=second.log,
    )
    wait("op-b to be ready as a standby", lambda: second.http("/readyz")[0] == 200, log=second.log)
    wait("op-a to be ready", lambda: first.http("/readyz")[0] == 200, log=first.log)
    assert leader_gauge(first) == "1.0" and leader_gauge(second) == "0.0"

    plane.kubectl("apply", "-f", "-", input=trainingjob("before"))
    wait("op-a to create the children", lambda: children(plane, "before") == EXPECTED, log=first.log)

    os.killpg(first.process.pid, signal.SIGKILL)
    killed = time.monotonic()
    first.process.wait()
    wait(
        "op-b to take over",
        lambda: holder(plane) == "op-b",
        timeout=LEASE_DURATION + 2 * RETRY_PERIOD + SLACK,
        log=second.log,
    )
    took_over = time.monotonic() - killed
    # The longest name a TrainingJob may have: its children (pods, Service, claim, alert rules with
    # the label alerts-for=trainingjob.<name>) are all created.
    after = "after-" + "x" * (NAME_LIMITS["TrainingJob"].longest - len("after-"))
    plane.kubectl("apply", "-f", "-", input=trainingjob(after))
    wait("op-b to reconcile a new TrainingJob", lambda: children(plane, after) == EXPECTED, log=second.log)
    reconciled = time.monotonic() - killed
    print(
        f"\nfailover after kill -9: Lease taken over in {took_over:.1f}s, new object reconciled in {reconciled:.1f}s"
    )
    assert leader_gauge(second) == "1.0"
    # op-b re-reconciled "before" on taking over (kopf lists everything): no second set of children.
    time.sleep(2 * RETRY_PERIOD)
    assert children(plane, "before") == EXPECTED
    assert children(plane, after) == EXPECTED
    statuses = plane.get("trainingjobs", "-n", NS)["items"]
    assert {tj["metadata"]["name"]: tj.get("status", {}).get("phase") for tj in statuses} == {
        "before": "Created",
        after: "Created",
    }
    wait(
        "the alert rules of the longest name",
        lambda: plane.get("configmaps", "-n", NS, "-l", f"modelops.dev/alerts-for=trainingjob.{after}")[
            "items"
        ],
        log=second.log,
    )

    # A clean stop releases the Lease: the next replica need not wait out the lease duration.
    third = elect("op-c")
    wait(
        "op-c to stand by",
        lambda: "standing by, op-b holds the Lease" in third.log.read_text(),
        log=third.log,
    )
    os.killpg(second.process.pid, signal.SIGTERM)
    stopped = time.monotonic()
    wait("op-c to take over a released Lease", lambda: holder(plane) == "op-c", log=third.log)
    released = time.monotonic() - stopped
    print(f"failover after SIGTERM (Lease released): {released:.1f}s")
    assert second.process.wait(timeout=30) == 0
    assert "released the Lease" in second.log.read_text()
    assert released < LEASE_DURATION, "a released Lease is taken at the next retry, not at expiry"

    # Someone else holds the Lease (a partition, from op-c's side): op-c must stop reconciling.
    lease = plane.get("lease", LEASE, "-n", NS)
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    lease["spec"].update(holderIdentity="intruder", renewTime=now, acquireTime=now, leaseDurationSeconds=3600)
    plane.kubectl("replace", "-f", "-", input=json.dumps(lease))
    taken = time.monotonic()
    wait(
        "op-c to stop after its renew deadline",
        lambda: third.process.poll() is not None,
        timeout=RENEW_DEADLINE + 2 * RETRY_PERIOD + SLACK,
        log=third.log,
    )
    print(f"a leader that lost its Lease stopped {time.monotonic() - taken:.1f}s later")
    assert third.process.returncode == LOST_LEADERSHIP_EXIT
    assert "stopping at once" in third.log.read_text()
    # It keeps trying for the renew deadline from its last renewal (up to a retry period before `taken`).
    assert time.monotonic() - taken >= RENEW_DEADLINE - 2 * RETRY_PERIOD, "it gave up before the deadline"

    # Every Lease call the operators made is granted by the chart's leader election Role.
    calls = lease_calls(plane.dir / "audit.log")
    assert {verb for verb, _ in calls} == {"get", "create", "update"}
    granted = leader.rules(LEASE)
    for verb, name in calls:
        assert any(
            verb in rule["verbs"] and (not rule.get("resourceNames") or name in rule["resourceNames"])
            for rule in granted
        ), (verb, name)


def lease_calls(audit: Path) -> set[tuple[str, str | None]]:
    """(verb, name) of the operators' requests on Leases, from the API server's audit log."""
    calls = set()
    for line in audit.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if ref.get("resource") == "leases" and event.get("userAgent", "").startswith("OpenAPI-Generator/"):
            calls.add((event["verb"], ref.get("name")))
    return calls


def test_the_lease_protocol_on_a_real_api_server(plane: Any) -> None:
    """Acquire, renew, expiry by the observer's clock, transitions, release: the Lease as it is stored."""
    from modelops.controllers.cluster import Cluster

    cluster = Cluster(str(plane.kubeconfig))

    def elector(identity: str) -> leader.LeaderElector:
        config = leader.ElectionConfig(
            NS, "protocol", identity, lease_duration=2, renew_deadline=1.5, retry_period=0.5
        )
        return leader.LeaderElector(config, leader.ClusterLeases(cluster, NS, "protocol"))

    def stored() -> dict[str, Any]:
        spec: dict[str, Any] = plane.get("lease", "protocol", "-n", NS)["spec"]
        return spec

    a, b = elector("a"), elector("b")
    assert a.try_acquire_or_renew() and a.leading
    assert not b.try_acquire_or_renew() and b.holder == "a" and not b.leading
    first = stored()
    assert (first["holderIdentity"], first["leaseDurationSeconds"], first["leaseTransitions"]) == ("a", 2, 0)

    time.sleep(0.05)
    assert a.try_acquire_or_renew()
    renewed = stored()
    assert renewed["acquireTime"] == first["acquireTime"] and renewed["renewTime"] > first["renewTime"]
    assert renewed["leaseTransitions"] == 0

    # a stops renewing. b saw the last renewal now, and may take over only a lease duration later.
    assert not b.try_acquire_or_renew()
    observed = time.monotonic()
    while not b.try_acquire_or_renew():
        assert time.monotonic() - observed < 10, "b never took over an expired Lease"
        time.sleep(0.1)
    assert time.monotonic() - observed >= 2 - 0.05
    taken = stored()
    assert (taken["holderIdentity"], taken["leaseTransitions"]) == ("b", 1)
    assert not a.try_acquire_or_renew() and a.holder == "b"

    # A released Lease is free at once.
    assert b.release() and not b.leading
    assert "holderIdentity" not in stored() or not stored()["holderIdentity"]
    assert a.try_acquire_or_renew()
    assert (stored()["holderIdentity"], stored()["leaseTransitions"]) == ("a", 2)


def test_a_leader_cut_off_from_the_api_server_gives_up_after_the_renew_deadline(
    plane: Any, tmp_path: Path
) -> None:
    """No answer at all (connection refused): failed attempts, never a crash, until the deadline."""
    import asyncio
    import socket

    import yaml

    from modelops.controllers.cluster import Cluster

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]  # closed again when the block ends: nothing listens there
    config = yaml.safe_load(plane.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{dead}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    settings = leader.ElectionConfig(
        NS, "cut-off", "a", lease_duration=2, renew_deadline=1.5, retry_period=0.5
    )
    elector = leader.LeaderElector(settings, leader.ClusterLeases(Cluster(str(kubeconfig)), NS, "cut-off"))

    async def scenario() -> float:
        assert not await elector._attempt(1.0), "an unreachable API server is a failed attempt"
        started = time.monotonic()
        await asyncio.wait_for(elector.hold(), timeout=10)
        return time.monotonic() - started

    gave_up = asyncio.run(scenario())
    assert 1.5 <= gave_up < 10
    assert not elector.leading
