"""The local plane must not invent what a cluster would not do: env values, paths and schedules.

Pure decisions, no processes: `test_kubelet.py` checks env values and command paths on a real plane.
Each case here is a defect another part of the project hit on the local plane:

* an env value equal to a Service's name (`MODELOPS_MODEL_NAME=echo`) arrived as the Service's IP;
* a path that only starts with a mountPath as a string (`/tmpfoo`, `/tmp+x`), or a host path of the
  plane itself under a mounted directory (the interpreter with an emptyDir at /tmp), was taken for
  the volume;
* the CronJob controller ran schedules Kubernetes refuses (day-of-week 7, a `TZ=` prefix).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from modelops.cron import ScheduleError
from modelops_local.controllers import cronjobs
from modelops_local.controllers.actions import Create, Event
from modelops_local.nodes.containers import container_mounts, rewrite_paths
from modelops_local.nodes.network import cluster_hosts, rewrite_cluster_names


def _svc(name: str, ip: str = "None", ns: str = "default") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": ip, "selector": {"app": name}, "ports": [{"port": 80}]},
    }


def _pod(name: str, ip: str, hostname: str, subdomain: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "labels": {"app": subdomain}},
        "spec": {"hostname": hostname, "subdomain": subdomain},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


RECORDS = cluster_hosts(
    [_svc("echo", "127.96.0.10"), _svc("web", "127.96.0.11", ns="other"), _svc("ranks")],
    [_pod("rank-0", "127.244.0.2", "rank-0", "ranks")],
)


@pytest.mark.parametrize(
    "value",
    [
        "echo",  # a model's name that happens to be a Service's
        "echo:8080",
        "http://echo/v2/models",
        "echo.default",  # short forms are the pod resolver's job, at connect time
        "web.other",
        "serve echo traffic",
        "/models/echo.default/x",
    ],
)
def test_env_values_that_are_not_cluster_dns_names_stay_as_written(value: str) -> None:
    assert rewrite_cluster_names(value, RECORDS, "default") == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("echo.default.svc", "127.96.0.10"),
        ("http://echo.default.svc.cluster.local:8080/v2", "http://127.96.0.10:8080/v2"),
        ("web.other.svc.cluster.local:80", "127.96.0.11:80"),
        ("rank-0.ranks", "127.244.0.2"),  # a pod under a headless Service: torchrun's rendezvous
        ("tcp://rank-0.ranks.default:29500", "tcp://127.244.0.2:29500"),
        ("rank-0.ranks.default.svc.cluster.local", "127.244.0.2"),
    ],
)
def test_service_dns_names_and_headless_pod_names_become_ips_for_code_outside_python(
    value: str, expected: str
) -> None:
    assert rewrite_cluster_names(value, RECORDS, "default") == expected


MOUNTS = {"/tmp": Path("/plane/pods/p/volumes/scratch"), "/data": Path("/plane/pods/p/volumes/data")}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/tmp/x.py", "/plane/pods/p/volumes/scratch/x.py"),
        ("/tmp", "/plane/pods/p/volumes/scratch"),
        ("--out=/tmp/o", "--out=/plane/pods/p/volumes/scratch/o"),
        ("/tmp,/data", "/plane/pods/p/volumes/scratch,/plane/pods/p/volumes/data"),
        ("/tmpfoo/x.py", "/tmpfoo/x.py"),
        ("/tmp+x/y", "/tmp+x/y"),
        ("/tmp.bak", "/tmp.bak"),
        ("/tmp~", "/tmp~"),
        ("/tmp@2", "/tmp@2"),
        ("/var/tmp/x", "/var/tmp/x"),
        ("/database/x", "/database/x"),
    ],
)
def test_mount_paths_match_whole_path_components_only(text: str, expected: str) -> None:
    assert rewrite_paths(text, MOUNTS) == expected


def test_host_paths_of_the_plane_under_a_mount_path_are_not_the_volume() -> None:
    keep = ["/tmp/ci/.venv", "/tmp/plane"]
    assert rewrite_paths("/tmp/ci/.venv/bin/python", MOUNTS, keep) == "/tmp/ci/.venv/bin/python"
    assert rewrite_paths("/tmp/plane/pods/p/c/termination-log", MOUNTS, keep).startswith("/tmp/plane/")
    assert rewrite_paths("/tmp/ci/x.py", MOUNTS, keep) == "/plane/pods/p/volumes/scratch/ci/x.py"
    assert rewrite_paths("/tmp/ci/.venvx", MOUNTS, keep) == "/plane/pods/p/volumes/scratch/ci/.venvx"


def test_mount_paths_are_normalised_before_matching() -> None:
    volumes = {"v": Path("/host/v")}
    mounts = container_mounts(
        {"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/tmp//x/"}]}, volumes
    )
    assert mounts == {"/tmp/x": Path("/host/v")}
    assert rewrite_paths("/tmp/x/a", mounts) == "/host/v/a"


def _cronjob(schedule: str, time_zone: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {}}}}}
    if time_zone:
        spec["timeZone"] = time_zone
    return {
        "metadata": {
            "name": "nightly",
            "namespace": "ns",
            "uid": "cj",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("0 12 * * 7", "above maximum|outside 0-6"),
        ("TZ=UTC 0 12 * * *", "use timeZone field instead"),
        ("CRON_TZ=Europe/Berlin 0 12 * * *", "use timeZone field instead"),
    ],
)
def test_the_cronjob_controller_refuses_what_kubernetes_refuses(schedule: str, reason: str) -> None:
    with pytest.raises(ScheduleError, match=reason):
        cronjobs.parse_schedule(schedule, None)
    # Sunday 4 Jan 2026 12:00 has passed: a lenient parser would run the job.
    result = cronjobs.reconcile(_cronjob(schedule), [], dt.datetime(2026, 1, 4, 12, 0, 30, tzinfo=dt.UTC))
    assert not [a for a in result.actions if isinstance(a, Create)]
    (event,) = [a for a in result.actions if isinstance(a, Event)]
    assert (event.reason, event.type) == ("UnparseableSchedule", "Warning")


def test_the_cronjob_controller_takes_the_time_zone_from_spec_time_zone() -> None:
    when = dt.datetime(2026, 7, 1, 11, 0, 30, tzinfo=dt.UTC)  # 13:00 in Berlin (summer time)
    result = cronjobs.reconcile(_cronjob("0 13 * * 3", "Europe/Berlin"), [], when)
    (create,) = [a for a in result.actions if isinstance(a, Create)]
    assert create.body["metadata"]["annotations"][cronjobs.SCHEDULED] == "2026-07-01T11:00:00Z"
