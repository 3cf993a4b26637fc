"""The ModelVersion controller's decisions, with plain dicts: numbers, verification, gates, aliases,
servedBy, retention and the verification pod."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from modelops import podsecurity, status
from modelops.api.modelversion import ModelVersionSpec
from modelops.builders import modelversion as builders
from modelops.controllers import modelversion as mv
from modelops_local import schema

NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)


def version(
    name: str,
    *,
    model: str = "digits",
    number: int | None = None,
    assigned: int | None = None,
    aliases: list[str] | None = None,
    asked: list[str] | None = None,
    gates: list[dict[str, Any]] | None = None,
    metrics: dict[str, float] | None = None,
    phase: str | None = "Ready",
    created: str = "2026-11-25T10:00:00Z",
    generation: int = 1,
    promotion: dict[str, Any] | None = None,
    **status_extra: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": model, "source": {"uri": f"pvc://models/{name}/model.pt"}}
    if number is not None:
        spec["version"] = number
    spec["promotion"] = {"aliases": asked or [], "gates": gates or [], **(promotion or {})}
    st: dict[str, Any] = {"aliases": aliases or [], "metrics": metrics or {}, **status_extra}
    if phase:
        st["phase"] = phase
    if assigned is not None:
        st["version"] = assigned
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}",
            "creationTimestamp": created,
            "generation": generation,
            "resourceVersion": "7",
        },
        "spec": spec,
        "status": st,
    }


# -- version numbers -------------------------------------------------------------------------------


def test_versions_number_monotonically_per_model_counting_given_and_assigned_numbers() -> None:
    others = [
        version("a", number=3),
        version("b", assigned=5),
        version("x", model="other", number=40),
    ]
    me = version("new")
    assert mv.next_version(me, [*others, me]) == 6
    assert mv.next_version(version("first", model="fresh"), others) == 1


def test_the_later_of_two_versions_with_one_number_is_the_duplicate() -> None:
    older = version("old", number=2, created="2026-11-25T10:00:00Z")
    newer = version("new", number=2, created="2026-11-25T11:00:00Z")
    assert mv.duplicate_of(newer, [older, newer]) == "old"
    assert mv.duplicate_of(older, [older, newer]) is None
    # Same second: the name breaks the tie, so both sides agree on which one stalls.
    same = version("aaa", number=2, created="2026-11-25T10:00:00Z")
    assert mv.duplicate_of(older, [older, same]) == "aaa"
    assert mv.duplicate_of(same, [older, same]) is None


# -- where the artifact is, and when to verify --------------------------------------------------------


def spec_of(obj: dict[str, Any]) -> ModelVersionSpec:
    return ModelVersionSpec.model_validate(obj["spec"])


def test_a_pvc_uri_is_the_claim_and_the_path_inside_it() -> None:
    loc = mv.locate(spec_of(version("a")), None)
    assert loc == builders.Location("models", "a/model.pt")
    assert isinstance(loc, builders.Location) and loc.uri == "pvc://models/a/model.pt"


def test_an_s3_uri_is_fetched_by_the_verifier_with_its_secret_and_no_claim() -> None:
    obj = version("a")
    obj["spec"]["source"] = {"uri": "s3://bucket/models/model.pt", "credentialsSecret": {"name": "aws"}}
    loc = mv.locate(spec_of(obj), None)
    assert isinstance(loc, builders.Location) and not loc.on_claim
    assert loc.uri == "s3://bucket/models/model.pt" and loc.credentials_secret == "aws"


def job(phase: str | None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "digits", "namespace": "default"},
        "spec": {"image": None, "hyperparameters": {"epochs": 3, "seed": 7}, **spec},
        "status": {
            "phase": phase,
            "metrics": {"accuracy": 0.9, "loss": 0.3},
            "completionTime": "2026-11-25T11:00:00Z",
        },
    }


def test_a_training_job_source_waits_for_the_job_then_uses_its_checkpoint_claim() -> None:
    obj = version("digits-1")
    obj["spec"]["source"] = {"trainingJob": {"name": "digits"}}
    spec = spec_of(obj)
    missing = mv.locate(spec, None)
    assert isinstance(missing, status.Conclusion) and missing.reason == "TrainingJobNotFound"
    running = mv.locate(spec, job("Running"))
    assert isinstance(running, status.Conclusion) and running.state is status.State.PROGRESSING
    failed = mv.locate(spec, job("Failed"))
    assert isinstance(failed, status.Conclusion) and failed.state is status.State.STALLED
    assert mv.locate(spec, job("Succeeded")) == builders.Location("digits-checkpoints", "output/model.pt")
    own = job("Succeeded", checkpoint={"storage": {"existingClaim": "shared"}})
    assert mv.locate(spec, own) == builders.Location("shared", "output/model.pt")


def test_verification_runs_once_then_again_for_each_new_reverify_annotation() -> None:
    obj = version("a")
    assert mv.needs_verification(obj)
    obj["status"]["verification"] = {"request": "", "finishedAt": "2026-11-25T10:00:00Z"}
    assert not mv.needs_verification(obj)
    obj["metadata"]["annotations"] = {mv.REVERIFY_ANNOTATION: "monday"}
    assert mv.needs_verification(obj)
    obj["status"]["verification"] = {"request": "monday", "startedAt": "2026-11-25T10:01:00Z"}
    assert mv.needs_verification(obj), "a run that has not finished has not answered the request"
    obj["status"]["verification"]["finishedAt"] = "2026-11-25T10:02:00Z"
    assert not mv.needs_verification(obj)


def test_a_periodic_check_runs_when_due_and_keeps_its_request_while_it_runs() -> None:
    obj = version("a", verification={"request": "", "finishedAt": "2026-11-25T11:00:00Z"})
    assert mv.wanted_request(obj, now=NOW, interval=7200) is None
    assert mv.wanted_request(obj, now=NOW) is None, "off without an interval"
    due = mv.wanted_request(obj, now=NOW, interval=3600)
    assert due == f"@periodic-{int(NOW.timestamp())}"
    obj["status"]["verification"] = {"request": due, "startedAt": "2026-11-25T12:00:00Z"}
    later = NOW + datetime.timedelta(seconds=30)
    assert mv.wanted_request(obj, now=later, interval=3600) == due, "the running check keeps its pod"
    obj["status"]["verification"]["finishedAt"] = "2026-11-25T12:00:30Z"
    assert mv.wanted_request(obj, now=later, interval=3600) is None
    # A user's request overtakes the schedule.
    obj["metadata"]["annotations"] = {mv.REVERIFY_ANNOTATION: "now"}
    assert mv.wanted_request(obj, now=later, interval=3600) == "now"


def test_the_expected_digest_is_the_spec_s_else_the_one_recorded() -> None:
    obj = version("a", artifact={"sha256": "ab" * 32})
    assert mv.expected_digest(spec_of(obj), obj) == "ab" * 32
    obj["spec"]["sha256"] = "cd" * 32
    assert mv.expected_digest(spec_of(obj), obj) == "cd" * 32
    assert mv.expected_digest(spec_of(version("b")), version("b")) is None


# -- the verification pod's answer ----------------------------------------------------------------


def finished_pod(phase: str, message: str) -> dict[str, Any]:
    return {
        "status": {
            "phase": phase,
            "containerStatuses": [
                {"state": {"terminated": {"exitCode": 0 if phase == "Succeeded" else 65, "message": message}}}
            ],
        }
    }


def test_a_running_pod_has_no_verdict_yet() -> None:
    assert mv.pod_verdict({"status": {"phase": "Running"}}) is None


def test_a_digest_mismatch_is_reported_with_its_reason_and_what_to_do() -> None:
    message = json.dumps(
        {"status": "Failed", "reason": "ArtifactDigestMismatch", "message": "sha256 of model.pt is 00"}
    )
    verdict = mv.pod_verdict(finished_pod("Failed", message))
    assert verdict is not None and not verdict.ok and verdict.reason == "ArtifactDigestMismatch"
    text = mv.failure_message(verdict)
    assert "sha256 of model.pt" in text and "modelops.dev/reverify" in text


def test_a_crashed_verifier_says_so_with_its_log_tail() -> None:
    verdict = mv.pod_verdict(finished_pod("Failed", "Traceback ...\nMemoryError"))
    assert verdict is not None and verdict.reason == "VerificationFailed" and "MemoryError" in verdict.message
    odd = json.dumps({"status": "Failed", "reason": "SomethingElse", "message": "x"})
    assert mv.pod_verdict(finished_pod("Failed", odd)).reason == "VerificationFailed"  # type: ignore[union-attr]


def test_a_verified_artifact_records_digest_metrics_and_lineage() -> None:
    answer = {
        "status": "Succeeded",
        "reason": "Succeeded",
        "message": "sha256 matches",
        "artifact": {
            "path": "/x/output/model.pt",
            "sha256": "ab" * 32,
            "sizeBytes": 1234,
            "format": "torchscript",
        },
        "card": {
            "metrics": {"accuracy": 0.95, "f1": 0.9},
            "datasetDigest": "dd" * 32,
            "created": "2026-11-25T11:00:00Z",
        },
    }
    verdict = mv.pod_verdict(finished_pod("Succeeded", json.dumps(answer)))
    assert verdict is not None and verdict.ok
    obj = version("digits-1")
    obj["spec"]["source"] = {"trainingJob": {"name": "digits"}}
    loc = builders.Location("digits-checkpoints", "output/model.pt")
    out = mv.verified_status(verdict, loc, spec_of(obj), job("Succeeded"), image="worker:1", now=NOW)
    assert out["artifact"] == {
        "uri": "pvc://digits-checkpoints/output/model.pt",
        "sha256": "ab" * 32,
        "sizeBytes": 1234,
        "format": "torchscript",
        "verifiedAt": "2026-11-25T12:00:00Z",
    }
    # The card (bound to this digest) wins over the job's status; the job's own metrics fill in.
    assert out["metrics"] == {"accuracy": 0.95, "f1": 0.9, "loss": 0.3}
    assert out["lineage"] == {
        "trainingJob": "digits",
        "image": "worker:1",
        "hyperparameters": {"epochs": 3, "seed": 7},
        "created": "2026-11-25T11:00:00Z",
        "datasetDigest": "dd" * 32,
    }


# -- gates and aliases ----------------------------------------------------------------------------------


def test_gates_pass_and_fail_on_thresholds_and_a_missing_metric_fails() -> None:
    me = version(
        "a",
        asked=["champion"],
        gates=[{"metric": "accuracy", "op": ">=", "value": 0.9}],
        metrics={"accuracy": 0.95},
    )
    [grant] = mv.decide_aliases(me, [me])
    assert grant.action == "Granted" and grant.previous is None
    assert grant.gates == [
        {"metric": "accuracy", "op": ">=", "threshold": 0.9, "passed": True, "value": 0.95}
    ]

    low = version(
        "b",
        asked=["champion"],
        gates=[{"metric": "accuracy", "op": ">=", "value": 0.99}],
        metrics={"accuracy": 0.95},
    )
    [deny] = mv.decide_aliases(low, [low])
    assert deny.action == "Denied" and "accuracy 0.95 is not >= 0.99" in deny.message

    missing = version(
        "c", asked=["champion"], gates=[{"metric": "auc", "op": ">", "value": 0.5}], metrics={"accuracy": 1.0}
    )
    [deny] = mv.decide_aliases(missing, [missing])
    assert deny.action == "Denied" and "auc missing" in deny.message


def test_must_beat_current_compares_with_the_holder_in_the_metric_s_direction() -> None:
    holder = version("old", aliases=["champion"], metrics={"accuracy": 0.93, "loss": 0.2})
    better = version(
        "new",
        asked=["champion"],
        promotion={"mustBeatCurrent": True},
        metrics={"accuracy": 0.95, "loss": 0.3},
    )
    [d] = mv.decide_aliases(better, [holder, better])
    assert d.action == "Granted" and d.previous == "old"
    assert d.gates[-1]["value"] == 0.95 and d.gates[-1]["threshold"] == 0.93
    by_loss = version(
        "new",
        asked=["champion"],
        promotion={"mustBeatCurrent": True, "compareMetric": "loss", "higherIsBetter": False},
        metrics={"accuracy": 0.95, "loss": 0.3},
    )
    [d] = mv.decide_aliases(by_loss, [holder, by_loss])
    assert d.action == "Denied" and d.previous == "old"
    equal = version("eq", asked=["champion"], promotion={"mustBeatCurrent": True}, metrics={"accuracy": 0.93})
    assert mv.decide_aliases(equal, [holder, equal])[0].action == "Denied", "a tie does not beat the holder"


def test_aliases_are_decided_once_per_generation_and_only_when_ready() -> None:
    me = version("a", asked=["champion"], metrics={"accuracy": 0.9}, promotionGeneration=1)
    assert mv.decide_aliases(me, [me]) == [], "moved away since: not taken back until the spec changes"
    me["metadata"]["generation"] = 2
    assert [d.action for d in mv.decide_aliases(me, [me])] == ["Granted"]
    verifying = version("b", asked=["champion"], phase="Verifying")
    assert mv.decide_aliases(verifying, [verifying]) == []


def test_an_alias_dropped_from_the_spec_is_given_up() -> None:
    me = version("a", aliases=["champion", "staging"], asked=["staging"], promotionGeneration=1)
    [d] = mv.decide_aliases(me, [me])
    assert (d.alias, d.action) == ("champion", "Revoked")


def test_two_candidates_racing_for_one_alias_end_with_one_holder_and_a_consistent_history() -> None:
    """Grants are serialised per model; replay them in both orders as the operator would."""
    for order in (("x", "y"), ("y", "x")):
        objs = {
            "x": version(
                "x", asked=["champion"], metrics={"accuracy": 0.91}, promotion={"mustBeatCurrent": True}
            ),
            "y": version(
                "y", asked=["champion"], metrics={"accuracy": 0.97}, promotion={"mustBeatCurrent": True}
            ),
        }
        for _ in range(2):  # every version looks again (timers): nothing changes any more
            for name in order:
                me = objs[name]
                for d in mv.decide_aliases(me, list(objs.values())):
                    if d.action == "Granted" and d.previous:
                        patch = mv.revoke_patch(objs[d.previous], d.alias, name, NOW)
                        assert patch["metadata"]["resourceVersion"] == "7", (
                            "revocation carries its precondition"
                        )
                        objs[d.previous]["status"].update(patch["status"])
                    if d.action == "Granted":
                        me["status"]["aliases"] = [*me["status"]["aliases"], d.alias]
                    me["status"]["promotionHistory"] = mv.with_history(me, [mv.history_entry(d, NOW)])
                    me["status"]["promotionGeneration"] = 1
                me["status"]["promotionGeneration"] = 1
        holders = [n for n, o in objs.items() if "champion" in o["status"]["aliases"]]
        assert holders == ["y"], order
        grants = [(n, e["action"]) for n, o in objs.items() for e in o["status"].get("promotionHistory", [])]
        if order[0] == "x":
            assert sorted(grants) == [("x", "Granted"), ("x", "Revoked"), ("y", "Granted")]
        else:
            assert sorted(grants) == [("x", "Denied"), ("y", "Granted")]


# -- who serves it, deletion, retention ----------------------------------------------------------------


def isvc(name: str, ref: dict[str, Any], canary: dict[str, Any] | None = None, **st: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"modelRef": ref}
    if canary:
        spec["canary"] = {"modelRef": canary}
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec, "status": st}


def test_served_by_follows_version_alias_canary_and_what_pods_still_run() -> None:
    me = version("digits-2", number=2, aliases=["champion"])
    services = [
        isvc("by-version", {"model": "digits", "version": 2}),
        isvc("by-alias", {"model": "digits", "alias": "champion"}),
        isvc("as-canary", {"model": "digits", "version": 1}, canary={"model": "digits", "version": 2}),
        isvc("rolling-away", {"model": "digits", "version": 3}, stable={"modelVersion": "digits-2"}),
        isvc("other-version", {"model": "digits", "version": 1}),
        isvc("other-alias", {"model": "digits", "alias": "staging"}),
        isvc("other-model", {"model": "fraud", "version": 2}),
    ]
    names = [r["name"] for r in mv.served_by(me, services)]
    assert names == ["as-canary", "by-alias", "by-version", "rolling-away"]
    message = mv.deletion_blocked_message(mv.served_by(me, services[:1]))
    assert message.startswith(
        "cannot delete: served by InferenceService by-version; remove it from by-version first"
    )


def test_retention_keeps_the_newest_unaliased_versions_and_never_touches_aliased_or_served_ones() -> None:
    versions = [
        version(
            f"d{n}",
            number=n,
            aliases=["champion"] if n == 1 else [],
            servedBy=[{"namespace": "default", "name": "x"}] if n == 2 else [],
        )
        for n in range(1, 7)
    ]
    versions.append(version("d7", number=7, phase="Verifying"))
    versions.append(version("f1", model="fraud", number=1))
    assert mv.retention_victims(versions, keep=2) == ["d3", "d4"]
    assert mv.retention_victims(versions, keep=10) == []


# -- the verification pod -------------------------------------------------------------------------------


def test_the_verification_pod_mounts_the_claim_read_only_and_passes_restricted() -> None:
    pod = builders.verification_pod(
        "digits-1",
        "default",
        "uid-1",
        location=builders.Location("digits-checkpoints", "output/model.pt"),
        sha256="ab" * 32,
        fmt="torchscript",
        request="",
        image="ghcr.io/modelops/worker:test",
    )
    assert podsecurity.check_restricted(pod) == []
    assert schema.validate_builtin(pod) == []
    [container] = pod["spec"]["containers"]
    assert container["args"] == [
        "verify",
        "--artifact",
        "/var/run/modelops/artifact/output/model.pt",
        "--format",
        "torchscript",
        "--sha256",
        "ab" * 32,
    ]
    [claim] = [v for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert claim["persistentVolumeClaim"] == {"claimName": "digits-checkpoints", "readOnly": True}
    assert pod["metadata"]["ownerReferences"][0]["name"] == "digits-1"
    assert pod["metadata"]["labels"][builders.LABEL_VERIFIES] == "digits-1"
    # Serving pods carry modelops.dev/modelversion: a verifier query must never select them.
    assert "modelops.dev/modelversion" not in pod["metadata"]["labels"]
    assert builders.pod_name("digits-1", "") != builders.pod_name("digits-1", "again")


@pytest.mark.parametrize("name", ["x" * 63, "digits-1"])
def test_verification_pod_names_stay_valid(name: str) -> None:
    assert len(builders.pod_name(name, "r")) <= 63


def test_retention_is_off_unless_the_operator_is_given_a_positive_number() -> None:
    from modelops.controllers import modelversion_handlers as handlers

    assert handlers.retain({}) is None
    assert handlers.retain({handlers.ENV_RETAIN: ""}) is None
    assert handlers.retain({handlers.ENV_RETAIN: "0"}) is None
    assert handlers.retain({handlers.ENV_RETAIN: "five"}) is None
    assert handlers.retain({handlers.ENV_RETAIN: " 5 "}) == 5
    assert handlers.reverify_interval({}) is None
    assert handlers.reverify_interval({handlers.ENV_REVERIFY_INTERVAL: "10"}) is None, "under a minute: off"
    assert handlers.reverify_interval({handlers.ENV_REVERIFY_INTERVAL: "86400"}) == 86400


class Store:
    """An in-memory stand-in for the API (fault injection: stale writes get 409 as from a server)."""

    def __init__(self, objs: list[dict[str, Any]]) -> None:
        self.objs = {o["metadata"]["name"]: o for o in objs}
        self.writes: list[tuple[str, dict[str, Any]]] = []

    def list_items(self, path: str, **_: Any) -> list[dict[str, Any]]:
        return [json.loads(json.dumps(o)) for o in self.objs.values()]

    def patch(self, path: str, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        import kubernetes

        name = path.removesuffix("/status").rsplit("/", 1)[1]
        obj = self.objs[name]
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and rv != obj["metadata"]["resourceVersion"]:
            raise kubernetes.client.ApiException(status=409, reason="Conflict")
        obj["status"].update(body.get("status") or {})
        obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
        self.writes.append((name, body))
        return obj


def test_a_grant_revokes_the_old_holder_first_and_every_write_carries_its_precondition() -> None:
    from modelops.controllers import modelversion_handlers as handlers

    store = Store(
        [
            version("old", aliases=["champion"], metrics={"accuracy": 0.9}),
            version("new", asked=["champion"], metrics={"accuracy": 0.95}),
        ]
    )
    posted: list[tuple[str, str]] = []
    handlers.promote(
        store,  # type: ignore[arg-type]
        "default",
        "new",
        "digits",
        lambda obj, **kw: posted.append((obj["metadata"]["name"], kw["reason"])),
    )
    assert [name for name, _ in store.writes] == ["old", "new"], "revoke before grant: never two holders"
    assert all(body["metadata"]["resourceVersion"] == "7" for _, body in store.writes)
    assert store.objs["old"]["status"]["aliases"] == []
    assert store.objs["new"]["status"]["aliases"] == ["champion"]
    assert store.objs["new"]["status"]["promotionGeneration"] == 1
    assert posted == [("old", "AliasRevoked"), ("new", "AliasGranted")]


def test_a_holder_changed_meanwhile_makes_the_grant_fail_instead_of_making_two_holders() -> None:
    import kubernetes

    from modelops.controllers import modelversion_handlers as handlers

    store = Store(
        [
            version("old", aliases=["champion"], metrics={"accuracy": 0.9}),
            version("new", asked=["champion"], metrics={"accuracy": 0.95}),
        ]
    )
    real_list = store.list_items

    def stale_list(path: str, **kw: Any) -> list[dict[str, Any]]:
        items = real_list(path, **kw)
        store.objs["old"]["metadata"]["resourceVersion"] = "8"  # someone wrote it after our read
        return items

    store.list_items = stale_list  # type: ignore[method-assign]
    with pytest.raises(kubernetes.client.ApiException) as error:
        handlers.promote(store, "default", "new", "digits", lambda *a, **k: None)  # type: ignore[arg-type]
    assert error.value.status == 409
    assert store.objs["new"]["status"]["aliases"] == [], "nothing granted on a stale view"


def test_the_timer_costs_nothing_for_a_settled_version() -> None:
    from modelops.controllers import modelversion_handlers as handlers

    settled = version("a", assigned=1, verification={"request": "", "finishedAt": "2026-11-25T10:00:00Z"})
    settled["metadata"]["finalizers"] = [mv.FINALIZER]
    assert not handlers.has_work(settled)
    asks = json.loads(json.dumps(settled))
    asks["spec"]["promotion"]["aliases"] = ["champion"]
    assert handlers.has_work(asks), "a Ready version with an undecided alias request"
    asks["status"]["promotionGeneration"] = 1
    assert not handlers.has_work(asks)
    unprotected = json.loads(json.dumps(settled))
    unprotected["metadata"]["finalizers"] = []
    assert handlers.has_work(unprotected)


def test_a_failed_version_still_gives_up_an_alias_dropped_from_its_spec() -> None:
    from modelops.controllers import modelversion_handlers as handlers

    store = Store([version("a", phase="Failed", aliases=["champion"], asked=[], promotionGeneration=1)])
    handlers.promote(store, "default", "a", "digits", lambda *a, **k: None)  # type: ignore[arg-type]
    st = store.objs["a"]["status"]
    assert st["aliases"] == []
    assert [(e["alias"], e["action"]) for e in st["promotionHistory"]] == [("champion", "Revoked")]


class PodStore:
    """Pods as the API server lists them by an equality label selector (no server needed)."""

    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods = pods
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []

    def list_items(self, path: str, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        key, _, value = (label_selector or "=").partition("=")
        return [p for p in self.pods if not key or p["metadata"].get("labels", {}).get(key) == value]

    def create_at(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.created.append(body)
        return body

    def missing_claims(self, namespace: str, claims: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return []  # every claim exists here

    def failed_mounts(self, namespace: str) -> list[dict[str, Any]]:
        return []

    def delete(self, path: str, **_: Any) -> bool:
        self.deleted.append(path.rsplit("/", 1)[1])
        return True


def pod_of(name: str, labels: dict[str, str], owner_uid: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels, "ownerReferences": [{"uid": owner_uid}]},
        "status": {"phase": "Running"},
    }


def test_a_new_verification_never_deletes_serving_pods_or_pods_it_does_not_own() -> None:
    import kopf

    from modelops.controllers import modelversion_handlers as handlers

    obj = version("digits-1", verification={"request": "", "finishedAt": "2026-11-25T10:00:00Z"})
    obj["metadata"]["annotations"] = {mv.REVERIFY_ANNOTATION: "again"}
    obj["status"]["conditions"] = [
        {"type": "Verified", "status": "True", "reason": "Verified", "message": "ok"}
    ]
    store = PodStore(
        [
            pod_of("digits-classifier-stable-x", {"modelops.dev/modelversion": "digits-1"}, "uid-isvc"),
            pod_of(builders.pod_name("digits-1", ""), {builders.LABEL_VERIFIES: "digits-1"}, "uid-digits-1"),
            pod_of("lookalike", {builders.LABEL_VERIFIES: "digits-1"}, "uid-someone-else"),
        ]
    )
    desired: dict[str, Any] = {}
    conclusion = handlers._verify(
        store,  # type: ignore[arg-type]
        kopf.Body(obj),  # type: ignore[arg-type]
        spec_of(obj),
        desired,
        [],
        [],
        NOW,
        None,  # type: ignore[arg-type]
    )
    assert store.deleted == [builders.pod_name("digits-1", "")], "only its own overtaken verifier"
    [created] = store.created
    assert created["metadata"]["name"] == builders.pod_name("digits-1", "again")
    assert desired["verification"]["request"] == "again"
    assert conclusion.reason == "Reverifying" and conclusion.state is status.State.READY


def test_a_custom_images_lineage_records_only_the_hyperparameters_its_run_reported() -> None:
    answer = {
        "status": "Succeeded",
        "reason": "Succeeded",
        "artifact": {
            "path": "/x/output/model.pt",
            "sha256": "ab" * 32,
            "sizeBytes": 1,
            "format": "torchscript",
        },
    }
    verdict = mv.pod_verdict(finished_pod("Succeeded", json.dumps(answer)))
    assert verdict is not None
    obj = version("byo-1")
    obj["spec"]["source"] = {"trainingJob": {"name": "digits"}}
    loc = builders.Location("digits-checkpoints", "output/model.pt")
    # The API server defaulted spec.hyperparameters, but the custom image never read them.
    custom = job("Succeeded", image="registry.example/train:1")
    custom["status"]["metrics"]["bleu"] = 0.31
    out = mv.verified_status(verdict, loc, spec_of(obj), custom, image="worker:1", now=NOW)
    assert "hyperparameters" not in out["lineage"]
    assert out["metrics"]["bleu"] == 0.31, "a custom metric of the job reaches the version"
    custom["status"]["hyperparameters"] = {"lr": 0.01, "optimizer": "lion"}
    out = mv.verified_status(verdict, loc, spec_of(obj), custom, image="worker:1", now=NOW)
    assert out["lineage"]["hyperparameters"] == {"lr": 0.01, "optimizer": "lion"}


def test_a_missing_artifact_claim_stalls_before_any_verification_pod_exists() -> None:
    import kopf

    from modelops.controllers import modelversion_handlers as handlers

    class NoClaims(PodStore):
        def missing_claims(self, namespace: str, claims: list[tuple[str, str]]) -> list[tuple[str, str]]:
            return list(claims)

    obj = version("shelved")
    store = NoClaims([])
    desired: dict[str, Any] = {}
    conclusion = handlers._verify(
        store,  # type: ignore[arg-type]
        kopf.Body(obj),  # type: ignore[arg-type]
        spec_of(obj),
        desired,
        [],
        [],
        NOW,
        None,  # type: ignore[arg-type]
    )
    assert conclusion.state is status.State.STALLED and conclusion.reason == "ClaimNotFound"
    assert "spec.source.uri" in conclusion.message
    assert store.created == [] and desired == {}, "no pod to hang in ContainerCreating"
