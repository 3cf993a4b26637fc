"""Built-in kinds against the official Kubernetes 1.33 schemas: what a real API server would refuse."""

from __future__ import annotations

from typing import Any

from modelops_local.schema import builtin_unknown_fields, validate_builtin

Obj = dict[str, Any]


def deployment() -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "serve", "labels": {"app": "serve"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "serve"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "serve"}},
                "spec": {
                    "containers": [
                        {
                            "name": "worker",
                            "image": "modelops/worker:0.1.0",
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 1}},
                            "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}},
                        }
                    ]
                },
            },
        },
    }


def test_a_good_deployment_has_no_errors() -> None:
    assert validate_builtin(deployment()) == []


def test_pod_with_a_wrong_type_and_a_missing_required_field() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"image": "busybox", "ports": [{"containerPort": "80"}]}]},
    }
    errors = validate_builtin(pod)
    assert [(e.field, e.type) for e in errors] == [
        ("spec.containers[0].name", "FieldValueRequired"),
        ("spec.containers[0].ports[0].containerPort", "FieldValueTypeInvalid"),
    ]
    assert str(errors[0]) == "spec.containers[0].name: Required value"
    assert str(errors[1]) == (
        'spec.containers[0].ports[0].containerPort: Invalid value: "string": '
        'spec.containers[0].ports[0].containerPort in body must be of type integer: "string"'
    )


def test_pod_without_containers() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
    assert [str(e) for e in validate_builtin(pod)] == ["spec.containers: Required value"]


def test_int_or_string_fields_accept_both_and_refuse_others() -> None:
    good = deployment()
    good["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] = "10%"
    assert validate_builtin(good) == []
    bad = deployment()
    bad["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = True
    (error,) = validate_builtin(bad)
    assert error.field == "spec.strategy.rollingUpdate.maxSurge"
    assert error.type == "FieldValueTypeInvalid"


def test_replicas_as_a_string_is_refused() -> None:
    bad = deployment()
    bad["spec"]["replicas"] = "2"
    assert [e.field for e in validate_builtin(bad)] == ["spec.replicas"]


def test_unknown_kinds_and_custom_resources_are_not_judged() -> None:
    assert (
        validate_builtin({"apiVersion": "modelops.dev/v1alpha1", "kind": "TrainingJob", "spec": {"x": 1}})
        == []
    )
    assert validate_builtin({"apiVersion": "v1", "kind": "PodSpec"}) == []
    assert validate_builtin({"kind": "Pod"}) == []


def test_other_api_groups_resolve() -> None:
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "h"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
            "maxReplicas": "3",
        },
    }
    assert [e.field for e in validate_builtin(hpa)] == ["spec.maxReplicas"]
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "r"},
        "rules": [{"apiGroups": [""], "resources": ["pods"]}],
    }
    assert [str(e) for e in validate_builtin(role)] == ["rules[0].verbs: Required value"]


def test_unknown_fields_of_builtin_kinds_are_named() -> None:
    typo = deployment()
    typo["spec"]["replica"] = 2
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    assert validate_builtin(typo) == []
    assert builtin_unknown_fields(typo) == [
        "spec.replica",
        "spec.template.spec.containers[0].imagePullPolice",
    ]
    assert builtin_unknown_fields(deployment()) == []


def pod(resources: Obj, labels: Obj | None = None) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": labels or {"app": "train"}},
        "spec": {"containers": [{"name": "c", "image": "i", "resources": resources}]},
    }


def test_resource_quantities_are_checked_as_the_server_does() -> None:
    assert (
        validate_builtin(
            pod({"requests": {"cpu": "500m", "nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 1}})
        )
        == []
    )
    errors = [
        str(e)
        for e in validate_builtin(pod({"requests": {"cpu": "2", "memory": "1.5 Gi"}, "limits": {"cpu": "1"}}))
    ]
    assert errors == [
        'spec.containers[0].resources.requests[memory]: Invalid value: "1.5 Gi": quantities must match the '
        "regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        'spec.containers[0].resources.requests[cpu]: Invalid value: "2": must be less than or equal to cpu limit of 1',
    ]


def test_gpus_must_be_whole_and_equal_to_their_limit() -> None:
    assert [str(e) for e in validate_builtin(pod({"requests": {"nvidia.com/gpu": 1}}))] == [
        "spec.containers[0].resources.limits: Required value: Limit must be set for non overcommitable resources"
    ]
    assert [
        str(e)
        for e in validate_builtin(pod({"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 2}}))
    ] == [
        "spec.containers[0].resources.requests[nvidia.com/gpu]: Invalid value: 1: must be equal to nvidia.com/gpu limit of 2"
    ]
    assert [str(e) for e in validate_builtin(pod({"limits": {"nvidia.com/gpu": "0.5"}}))] == [
        'spec.containers[0].resources.limits[nvidia.com/gpu]: Invalid value: "0.5": must be an integer'
    ]


def test_labels_in_every_object_meta_and_selector() -> None:
    bad = deployment()
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "serve", "model": "digits v2"}
    bad["spec"]["selector"]["matchLabels"] = {"app": "serve", "bad key!": "x"}
    fields = [e.field for e in validate_builtin(bad)]
    assert fields == ["spec.selector.matchLabels", "spec.template.metadata.labels"]


def test_free_form_content_is_not_mistaken_for_labels_or_resources() -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.dev"},
        "spec": {
            "group": "example.dev",
            "names": {"kind": "Thing", "plural": "things"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "metadata": {"type": "object"},
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "template": {
                                            "type": "object",
                                            "properties": {
                                                "metadata": {
                                                    "type": "object",
                                                    "properties": {"labels": {"type": "object"}},
                                                }
                                            },
                                        },
                                        "resources": {
                                            "type": "object",
                                            "properties": {"requests": {"type": "object"}},
                                        },
                                    },
                                },
                            },
                        }
                    },
                }
            ],
        },
    }
    assert validate_builtin(crd) == []
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"metadata": "x"}}
    assert validate_builtin(config) == []
