"""Pod Security Standards checks: a good pod passes, and each control catches its own violation.

Every bad case starts from a pod that passes "restricted" and changes one field, so a message in
the result can only come from the control under test; the message must name the field and, for
container-level fields, the container.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from modelops.podsecurity import check_baseline, check_restricted

Pod = dict[str, Any]


def good_pod() -> Pod:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "train-0", "annotations": {}},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
                "sysctls": [{"name": "net.ipv4.tcp_keepalive_time", "value": "60"}],
            },
            "initContainers": [
                {
                    "name": "fetch",
                    "image": "ghcr.io/modelops/worker:0.1.0",
                    "securityContext": _good_container_sc(),
                }
            ],
            "containers": [
                {
                    "name": "trainer",
                    "image": "ghcr.io/modelops/worker:0.1.0",
                    "ports": [{"containerPort": 8080}],
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                    "securityContext": _good_container_sc(),
                }
            ],
            "volumes": [
                {"name": "tmp", "emptyDir": {}},
                {"name": "ckpt", "persistentVolumeClaim": {"claimName": "ckpt"}},
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "token", "projected": {"sources": []}},
            ],
        },
    }


def _good_container_sc() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def trainer(pod: Pod) -> dict[str, Any]:
    return pod["spec"]["containers"][0]  # type: ignore[no-any-return]


def trainer_sc(pod: Pod) -> dict[str, Any]:
    return trainer(pod)["securityContext"]  # type: ignore[no-any-return]


def pod_sc(pod: Pod) -> dict[str, Any]:
    return pod["spec"]["securityContext"]  # type: ignore[no-any-return]


def test_good_pod_passes_both_profiles() -> None:
    assert check_restricted(good_pod()) == []
    assert check_baseline(good_pod()) == []


# (id, mutation, substring the message must contain, also a baseline violation?)
BAD: list[tuple[str, Callable[[Pod], None], str, bool]] = [
    (
        "hostProcess",
        lambda p: pod_sc(p).update(windowsOptions={"hostProcess": True}),
        "spec.securityContext.windowsOptions.hostProcess",
        True,
    ),
    (
        "container-hostProcess",
        lambda p: trainer_sc(p).update(windowsOptions={"hostProcess": True}),
        'spec.containers[0].securityContext.windowsOptions.hostProcess (container "trainer")',
        True,
    ),
    ("hostNetwork", lambda p: p["spec"].update(hostNetwork=True), "spec.hostNetwork", True),
    ("hostPID", lambda p: p["spec"].update(hostPID=True), "spec.hostPID", True),
    ("hostIPC", lambda p: p["spec"].update(hostIPC=True), "spec.hostIPC", True),
    (
        "privileged",
        lambda p: trainer_sc(p).update(privileged=True),
        'spec.containers[0].securityContext.privileged (container "trainer")',
        True,
    ),
    (
        "privileged-init",
        lambda p: p["spec"]["initContainers"][0]["securityContext"].update(privileged=True),
        'spec.initContainers[0].securityContext.privileged (container "fetch")',
        True,
    ),
    (
        "capability-outside-baseline",
        lambda p: trainer_sc(p)["capabilities"].update(add=["SYS_ADMIN"]),
        'spec.containers[0].securityContext.capabilities.add (container "trainer")',
        True,
    ),
    (
        "capability-baseline-but-not-restricted",
        lambda p: trainer_sc(p)["capabilities"].update(add=["CHOWN"]),
        "only NET_BIND_SERVICE may be added, not 'CHOWN'",
        False,
    ),
    (
        "drop-not-all",
        lambda p: trainer_sc(p)["capabilities"].update(drop=["NET_RAW"]),
        'spec.containers[0].securityContext.capabilities.drop (container "trainer"): must include ALL',
        False,
    ),
    (
        "no-capabilities",
        lambda p: trainer_sc(p).pop("capabilities"),
        'capabilities.drop (container "trainer"): must include ALL, is unset',
        False,
    ),
    (
        "hostPath",
        lambda p: p["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
        'spec.volumes[4] (volume "host"): hostPath volumes are forbidden',
        True,
    ),
    (
        "nfs-volume",
        lambda p: p["spec"]["volumes"].append({"name": "data", "nfs": {"server": "s", "path": "/"}}),
        'spec.volumes[4] (volume "data"): volume type nfs is not allowed',
        False,
    ),
    (
        "hostPort",
        lambda p: trainer(p)["ports"][0].update(hostPort=8080),
        'spec.containers[0].ports[0].hostPort (container "trainer")',
        True,
    ),
    (
        "apparmor-pod",
        lambda p: pod_sc(p).update(appArmorProfile={"type": "Unconfined"}),
        "spec.securityContext.appArmorProfile.type: must be RuntimeDefault or Localhost",
        True,
    ),
    (
        "apparmor-container",
        lambda p: trainer_sc(p).update(appArmorProfile={"type": "Unconfined"}),
        'spec.containers[0].securityContext.appArmorProfile.type (container "trainer")',
        True,
    ),
    (
        "apparmor-annotation",
        lambda p: p["metadata"]["annotations"].update(
            {"container.apparmor.security.beta.kubernetes.io/trainer": "unconfined"}
        ),
        "metadata.annotations['container.apparmor.security.beta.kubernetes.io/trainer']",
        True,
    ),
    (
        "selinux-type",
        lambda p: trainer_sc(p).update(seLinuxOptions={"type": "spc_t"}),
        "seLinuxOptions.type (container \"trainer\"): 'spc_t' is not allowed",
        True,
    ),
    (
        "selinux-user",
        lambda p: pod_sc(p).update(seLinuxOptions={"user": "system_u"}),
        "spec.securityContext.seLinuxOptions.user: must be unset",
        True,
    ),
    (
        "selinux-role",
        lambda p: trainer_sc(p).update(seLinuxOptions={"role": "object_r"}),
        'seLinuxOptions.role (container "trainer"): must be unset',
        True,
    ),
    (
        "procMount",
        lambda p: trainer_sc(p).update(procMount="Unmasked"),
        'spec.containers[0].securityContext.procMount (container "trainer")',
        True,
    ),
    (
        "seccomp-unconfined-pod",
        lambda p: pod_sc(p).update(seccompProfile={"type": "Unconfined"}),
        "spec.securityContext.seccompProfile.type: ",
        True,
    ),
    (
        "seccomp-unconfined-container",
        lambda p: trainer_sc(p).update(seccompProfile={"type": "Unconfined"}),
        'spec.containers[0].securityContext.seccompProfile.type (container "trainer"): ',
        True,
    ),
    (
        "seccomp-unset-everywhere",
        lambda p: pod_sc(p).pop("seccompProfile"),
        'seccompProfile.type (container "fetch"): must be RuntimeDefault or Localhost here or in '
        "spec.securityContext.seccompProfile.type",
        False,
    ),
    (
        "unsafe-sysctl",
        lambda p: pod_sc(p)["sysctls"].append({"name": "kernel.msgmax", "value": "1"}),
        "spec.securityContext.sysctls[1].name: 'kernel.msgmax' is not a safe sysctl",
        True,
    ),
    (
        "runAsNonRoot-unset",
        lambda p: pod_sc(p).pop("runAsNonRoot"),
        'runAsNonRoot (container "trainer"): must be true here or in spec.securityContext.runAsNonRoot',
        False,
    ),
    (
        "runAsNonRoot-false-pod",
        lambda p: pod_sc(p).update(runAsNonRoot=False),
        "spec.securityContext.runAsNonRoot: must be true, is false",
        False,
    ),
    (
        "runAsNonRoot-false-container",
        lambda p: trainer_sc(p).update(runAsNonRoot=False),
        'spec.containers[0].securityContext.runAsNonRoot (container "trainer"): must be true',
        False,
    ),
    (
        "runAsUser-root-pod",
        lambda p: pod_sc(p).update(runAsUser=0),
        "spec.securityContext.runAsUser: 0 (root) is not allowed",
        False,
    ),
    (
        "runAsUser-root-container",
        lambda p: trainer_sc(p).update(runAsUser=0),
        'spec.containers[0].securityContext.runAsUser (container "trainer"): 0 (root)',
        False,
    ),
    (
        "allowPrivilegeEscalation-unset",
        lambda p: trainer_sc(p).pop("allowPrivilegeEscalation"),
        'allowPrivilegeEscalation (container "trainer"): must be set to false, is unset',
        False,
    ),
    (
        "allowPrivilegeEscalation-true",
        lambda p: trainer_sc(p).update(allowPrivilegeEscalation=True),
        'allowPrivilegeEscalation (container "trainer"): must be set to false, is True',
        False,
    ),
    (
        "ephemeral-container",
        lambda p: p["spec"].update(ephemeralContainers=[{"name": "debug", "image": "busybox"}]),
        'spec.ephemeralContainers[0].securityContext.allowPrivilegeEscalation (container "debug")',
        False,
    ),
    (
        "probe-host",
        lambda p: trainer(p)["livenessProbe"]["httpGet"].update(host="169.254.169.254"),
        'spec.containers[0].livenessProbe.httpGet.host (container "trainer")',
        True,
    ),
    (
        "lifecycle-host",
        lambda p: trainer(p).update(lifecycle={"preStop": {"tcpSocket": {"port": 1, "host": "10.0.0.1"}}}),
        'spec.containers[0].lifecycle.preStop.tcpSocket.host (container "trainer")',
        True,
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected", "baseline"), [case[1:] for case in BAD], ids=[case[0] for case in BAD]
)
def test_each_violation_is_reported_with_its_field(
    mutate: Callable[[Pod], None], expected: str, baseline: bool
) -> None:
    pod = good_pod()
    mutate(pod)
    messages = check_restricted(pod)
    assert any(expected in m for m in messages), messages
    # Baseline-level controls show up in check_baseline too; restricted-only ones must not, or a
    # baseline namespace would be told to fix things it allows.
    assert any(expected in m for m in check_baseline(pod)) is baseline


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: trainer_sc(p)["capabilities"].update(add=["NET_BIND_SERVICE"]),
        lambda p: pod_sc(p).update(seccompProfile={"type": "Localhost", "localhostProfile": "x.json"}),
        # Seccomp and runAsNonRoot may live on every container instead of the pod.
        lambda p: [
            pod_sc(p).pop("seccompProfile"),
            pod_sc(p).pop("runAsNonRoot"),
            *(
                c["securityContext"].update(seccompProfile={"type": "RuntimeDefault"}, runAsNonRoot=True)
                for c in p["spec"]["containers"] + p["spec"]["initContainers"]
            ),
        ],
        lambda p: trainer_sc(p).update(seLinuxOptions={"type": "container_t", "level": "s0:c1,c2"}),
        lambda p: p["metadata"]["annotations"].update(
            {"container.apparmor.security.beta.kubernetes.io/trainer": "localhost/my-profile"}
        ),
        lambda p: trainer(p)["ports"][0].update(hostPort=0),
        lambda p: p["spec"]["volumes"].append(
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}
        ),
        lambda p: p["spec"]["volumes"].append({"name": "model", "image": {"reference": "r/m:1"}}),
    ],
    ids=[
        "add-NET_BIND_SERVICE",
        "seccomp-localhost",
        "per-container-settings",
        "selinux-container_t-with-level",
        "apparmor-localhost-annotation",
        "hostPort-0",
        "ephemeral-volume",
        "image-volume",
    ],
)
def test_allowed_variants_pass(mutate: Callable[[Pod], Any]) -> None:
    pod = good_pod()
    mutate(pod)
    assert check_restricted(pod) == []


def test_windows_pods_are_exempt_from_linux_only_controls() -> None:
    pod = good_pod()
    pod["spec"]["os"] = {"name": "windows"}
    pod_sc(pod).pop("seccompProfile")
    for container in pod["spec"]["containers"] + pod["spec"]["initContainers"]:
        container["securityContext"] = {}
    assert check_restricted(pod) == []


def _template_holders() -> list[tuple[dict[str, Any], str]]:
    template = {"metadata": {"labels": {"app": "x"}}, "spec": good_pod()["spec"]}
    return [
        ({"apiVersion": "apps/v1", "kind": kind, "spec": {"template": copy.deepcopy(template)}}, prefix)
        for kind, prefix in [
            ("Deployment", "spec.template.spec"),
            ("StatefulSet", "spec.template.spec"),
            ("DaemonSet", "spec.template.spec"),
            ("ReplicaSet", "spec.template.spec"),
        ]
    ] + [
        (
            {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": copy.deepcopy(template)}},
            "spec.template.spec",
        ),
        (
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "spec": {
                    "schedule": "@daily",
                    "jobTemplate": {"spec": {"template": copy.deepcopy(template)}},
                },
            },
            "spec.jobTemplate.spec.template.spec",
        ),
        (copy.deepcopy(template["spec"]), ""),
    ]


@pytest.mark.parametrize(
    ("obj", "prefix"), _template_holders(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_pod_template_holders_and_bare_specs(obj: dict[str, Any], prefix: str) -> None:
    assert check_restricted(obj) == []
    spec = obj
    for key in prefix.split(".") if prefix else []:
        spec = spec[key]
    spec["containers"][0]["securityContext"]["privileged"] = True
    field = f"{prefix}.containers[0]" if prefix else "containers[0]"
    assert check_restricted(obj) == [
        f'{field}.securityContext.privileged (container "trainer"): must be unset or false '
        "(baseline: Privileged Containers)"
    ]


def test_unknown_objects_are_refused_with_what_is_expected() -> None:
    with pytest.raises(ValueError, match="cannot find a pod spec in kind 'ConfigMap'"):
        check_restricted({"apiVersion": "v1", "kind": "ConfigMap", "data": {}})
    with pytest.raises(ValueError, match=r"spec.template.spec.containers: no containers to check"):
        check_restricted({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {}}})
    with pytest.raises(TypeError, match="expected a manifest as a mapping"):
        check_restricted("kind: Pod")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: trainer_sc(p)["capabilities"].update(add=["SYS_ADMIN"]),
        lambda p: trainer_sc(p).update(seccompProfile={"type": "Unconfined"}),
        lambda p: pod_sc(p).update(seccompProfile={"type": "Unconfined"}),
    ],
    ids=["capability", "container-seccomp", "pod-seccomp"],
)
def test_one_wrong_field_gives_one_message(mutate: Callable[[Pod], None]) -> None:
    # Restricted replaces the baseline seccomp and capabilities controls with stricter ones; both
    # firing would tell the user the same thing twice.
    pod = good_pod()
    mutate(pod)
    assert len(check_restricted(pod)) == 1, check_restricted(pod)
    assert len(check_baseline(pod)) == 1, check_baseline(pod)


def test_windows_pods_keep_the_baseline_seccomp_control() -> None:
    pod = good_pod()
    pod["spec"]["os"] = {"name": "windows"}
    pod_sc(pod)["seccompProfile"] = {"type": "Unconfined"}
    assert check_restricted(pod) == [
        "spec.securityContext.seccompProfile.type: Unconfined is not allowed; use RuntimeDefault (baseline: Seccomp)"
    ]
