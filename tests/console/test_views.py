"""The console's page models and HTML, from objects shaped as the API server returns them."""

from __future__ import annotations

import datetime
import re
from typing import Any

from modelops.console import charts, pages, views

NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)


def obj(kind: str, name: str, spec: dict[str, Any], status: dict[str, Any], ns: str = "ml") -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-12-07T11:00:00Z"},
        "spec": spec,
        "status": status,
    }


def ready(state: str, reason: str = "R", message: str = "") -> list[dict[str, Any]]:
    return [{"type": "Ready", "status": state, "reason": reason, "message": message}]


def mv(n: int, metrics: dict[str, float], *, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return obj(
        "ModelVersion",
        f"digits-{n}",
        {
            "model": "digits",
            "version": n,
            "source": {"trainingJob": {"name": f"train-{n}"}},
            "promotion": {"gates": [{"metric": "accuracy", "op": ">=", "value": 0.95}]},
        },
        {
            "phase": "Ready",
            "version": n,
            "conditions": ready("True"),
            "metrics": metrics,
            "lineage": {"trainingJob": f"train-{n}", "datasetDigest": "ab" * 32},
            "artifact": {"sha256": "cd" * 32, "sizeBytes": 2048, "format": "torchscript"},
            "promotionHistory": history or [],
        },
    )


def test_overview_links_every_object_and_says_how_it_is() -> None:
    lists = {
        "trainingjobs": [
            obj(
                "TrainingJob",
                "b",
                {},
                {
                    "phase": "Failed",
                    "conditions": [*ready("False", "OOM"), {"type": "Stalled", "status": "True"}],
                },
            ),
            obj(
                "TrainingJob",
                "a",
                {},
                {"phase": "Running", "progress": {"percent": 40, "epoch": 2, "totalEpochs": 5}},
            ),
        ],
        "modelversions": [mv(1, {"accuracy": 0.97})],
        "inferenceservices": [],
    }
    sections = views.overview(lists, NOW)
    tj = sections[0]["rows"]
    assert [r["name"] for r in tj] == ["a", "b"]  # sorted
    assert tj[0]["summary"] == "40%, epoch 2/5" and tj[0]["href"] == "/ns/ml/trainingjobs/a"
    assert tj[1]["health"] == "failed" and tj[1]["reason"] == "OOM"
    assert sections[1]["rows"][0]["href"] == "/ns/ml/models/digits#digits-1"
    assert sections[1]["rows"][0]["age"] == "1h"
    html = pages.overview(sections)
    assert '<a href="/ns/ml/trainingjobs/a">a</a>' in html and "No inferenceservices." in html


def test_cluster_text_is_escaped_everywhere() -> None:
    evil = obj(
        "TrainingJob", "x", {}, {"conditions": ready("False", "<script>alert(1)</script>", "<img src=x>")}
    )
    html = pages.overview(views.overview({"trainingjobs": [evil]}, NOW))
    assert "<script>" not in html and "<img" not in html and "&lt;script&gt;" in html


def test_training_curves_mark_restarts_where_the_run_resumed() -> None:
    history = [
        {"step": 10, "loss": 2.0, "time": "t"},
        {"step": 20, "loss": 1.0, "metrics": {"val_loss": 1.1, "val_accuracy": 0.6}, "time": "t"},
        {"step": 15, "loss": 1.2, "attempt": 1, "time": "t"},  # resumed from the step-15 checkpoint
        {
            "step": 30,
            "loss": 0.5,
            "metrics": {"val_loss": 0.6, "val_accuracy": 0.9},
            "attempt": 1,
            "time": "t",
        },
    ]
    curves = views.training_curves(history)
    assert curves["losses"]["loss"] == [(10, 2.0), (20, 1.0), (15, 1.2), (30, 0.5)]
    assert curves["losses"]["val_loss"] == [(20, 1.1), (30, 0.6)]
    assert curves["others"] == {"val_accuracy": [(20, 0.6), (30, 0.9)]}
    assert curves["markers"] == [{"step": 15.0, "label": "restart 1, resumed at step 15"}]
    job = obj(
        "TrainingJob",
        "train",
        {"model": {"architecture": "mlp"}, "dataset": {"builtin": "digits"}},
        {
            "phase": "Running",
            "restarts": 1,
            "startTime": "2026-12-07T11:58:00Z",
            "progress": {"percent": 60, "etaSeconds": 95, "step": 30, "totalSteps": 50},
            "history": history,
        },
    )
    v = views.training(job, [], [], NOW)
    assert v["eta"] == "1m35s" and v["elapsed"] == "2m00s" and v["percent"] == 60
    html = pages.training(v, "epoch 3/5\n", "train-0")
    svg = html[html.index('id="loss-chart"') :]
    assert svg.count('class="pt"') >= 6  # 4 loss points + 2 val_loss points in the loss chart
    assert "restart 1, resumed at step 15" in html
    assert '<progress id="progress" max="100" value="60">' in html


def test_a_finished_job_shows_no_eta() -> None:
    job = obj("TrainingJob", "t", {}, {"phase": "Succeeded", "progress": {"percent": 100, "etaSeconds": 3}})
    assert views.training(job, [], [], NOW)["eta"] == ""


def test_versions_side_by_side_with_the_best_marked_lineage_and_alias_timeline() -> None:
    granted = {"alias": "champion", "action": "Granted", "time": "2026-12-07T11:30:00Z"}
    moved = {
        "alias": "champion",
        "action": "Granted",
        "time": "2026-12-07T11:50:00Z",
        "previousHolder": "digits-1",
    }
    versions = [
        mv(2, {"accuracy": 0.98, "loss": 0.09}, history=[moved]),
        mv(1, {"accuracy": 0.93, "loss": 0.2}, history=[granted]),
        obj("ModelVersion", "other-1", {"model": "other"}, {}),
    ]
    isvc = obj("InferenceService", "svc", {}, {"stable": {"modelVersion": "digits-2"}})
    v = views.model("digits", versions, [isvc], NOW)
    assert [c["name"] for c in v["versions"]] == ["digits-1", "digits-2"]
    assert v["metric_names"] == ["accuracy", "loss"]
    assert v["best"] == {"accuracy": "digits-2", "loss": "digits-2"}  # lower loss is better
    assert [t["version"] for t in v["timeline"]] == ["digits-1", "digits-2"]
    assert v["versions"][1]["lineage"]["served_by"] == [
        {"name": "svc", "track": "stable", "href": "/ns/ml/inferenceservices/svc"}
    ]
    assert [g["passed"] for c in v["versions"] for g in c["gates"]] == [False, True]
    html = pages.model(v, "ml", "/ns/ml/models/digits")
    table = html[html.index('class="compare-table') :]
    assert re.search(r"0\.93.*0\.98 ★", table)
    assert 'href="/ns/ml/trainingjobs/train-1"' in html and "(from digits-1)" in html
    only = views.model("digits", versions, [], NOW, only=["2"])
    assert [c["name"] for c in only["versions"]] == ["digits-2"] and only["hidden"] == 1
    # Many versions: the newest and the alias holders, unless all are asked for.
    many = [mv(n, {"accuracy": n / 100}) for n in range(1, 31)]
    many[2]["status"]["aliases"] = ["champion"]
    shown = views.model("digits", many, [], NOW, limit=5)
    assert [c["version"] for c in shown["versions"]] == [3, 26, 27, 28, 29, 30] and shown["hidden"] == 24
    assert len(views.model("digits", many, [], NOW, only=["all"], limit=5)["versions"]) == 30
    assert "show all" in pages.model(shown, "ml", "/ns/ml/models/digits")


def test_each_canary_analysis_is_shown_with_its_numbers_and_verdict() -> None:
    record = {
        "modelVersion": "digits-broken",
        "outcome": "RolledBack",
        "startTime": "2026-12-07T11:58:00Z",
        "endTime": "2026-12-07T11:59:00Z",
        "reason": "2 failed analyses",
        "analyses": [
            {
                "lastCheckTime": "2026-12-07T11:58:30Z",
                "result": "Failed",
                "requests": 40,
                "successRate": 0.5,
                "trafficPercent": 50,
            },
            {
                "lastCheckTime": "2026-12-07T11:59:00Z",
                "result": "Failed",
                "requests": 38,
                "successRate": 0.47,
                "trafficPercent": 50,
            },
        ],
    }
    isvc = obj(
        "InferenceService",
        "svc",
        {"modelRef": {"model": "digits", "version": 1}},
        {
            "traffic": {"stable": 100, "canary": 0},
            "rolloutHistory": [{"modelVersion": "digits-1", "outcome": "Deployed"}, record],
        },
    )
    v = views.serving(isvc, [], [], {}, NOW)
    assert [r["outcome"] for r in v["rollouts"]] == ["RolledBack", "Deployed"]  # newest first
    assert v["rollouts"][0]["took"] == "1m00s"
    html = pages.serving(v)
    analyses = html[html.index('class="analyses') :]
    assert analyses.count('badge failed">Failed') == 2 and "0.47" in analyses and "38" in analyses


def test_request_rates_from_two_looks_at_the_counters() -> None:
    text = """
# TYPE modelops_serving_requests_total counter
modelops_serving_requests_total{code="200"} %d
modelops_serving_requests_total{code="500"} %d
modelops_serving_requests_total{code="400"} 2
# TYPE modelops_serving_request_duration_seconds histogram
modelops_serving_request_duration_seconds_bucket{le="0.01"} %d
modelops_serving_request_duration_seconds_bucket{le="0.1"} %d
modelops_serving_request_duration_seconds_bucket{le="+Inf"} %d
"""
    first = views.counters(text % (100, 0, 100, 100, 100))
    second = views.counters(text % (190, 10, 150, 200, 200))
    assert views.rates(None, first, 0) is None
    r = views.rates(first, second, 10.0)
    assert r is not None
    assert r["rps"] == 10.0 and r["error_ratio"] == 0.1 and r["client_errors"] == 0
    assert r["p50_ms"] is not None and r["p50_ms"] <= 10.0 and r["p99_ms"] is not None and r["p99_ms"] > 10.0
    assert views.rates(second, first, 10.0) is None  # a counter reset (a restarted pod)


def test_backups_list_manifests_and_ages_newest_first() -> None:
    policy = {"backup": {"schedule": "0 */6 * * *", "methods": ["copy"]}}
    status = {
        "backup": {
            "kept": 2,
            "lastSuccessTime": "2026-12-07T06:00:00Z",
            "backups": [
                {
                    "method": "copy",
                    "name": "20261207T000000Z",
                    "time": "2026-12-07T00:00:00Z",
                    "claimName": "bk",
                    "path": "p/1",
                    "manifestSha256": "ef" * 32,
                    "files": 3,
                    "sizeBytes": 4096,
                },
                {
                    "method": "copy",
                    "name": "20261207T060000Z",
                    "time": "2026-12-07T06:00:00Z",
                    "claimName": "bk",
                    "path": "p/2",
                    "manifestSha256": "12" * 32,
                    "files": 3,
                    "sizeBytes": 4096,
                },
            ],
        }
    }
    rows = views.backups(
        {"trainingjobs": [obj("TrainingJob", "t", policy, status), obj("TrainingJob", "u", {}, {})]}, NOW
    )
    assert len(rows) == 1
    assert [r["age"] for r in rows[0]["records"]] == ["6h", "12h"] and rows[0]["records"][0][
        "size"
    ] == "4.0 KiB"
    assert rows[0]["records"][0]["manifest"] == "12" * 32
    assert "bk/p/2" in pages.backups(rows)


def test_tuning_leaderboard_ranks_by_the_objective_direction() -> None:
    job = obj(
        "TuningJob",
        "tune",
        {"objective": {"metric": "val_loss", "direction": "minimize"}},
        {
            "trials": [
                {"name": "tune-0", "parameters": {"learningRate": 0.1}, "value": 0.5, "state": "Succeeded"},
                {
                    "name": "tune-1",
                    "parameters": {"learningRate": 0.01},
                    "value": 0.2,
                    "state": "Complete",
                    "intermediate": [[1, 0.6], [2, 0.3]],
                },
                {"name": "tune-2", "parameters": {"learningRate": 0.001}, "state": "Running"},
            ]
        },
    )
    v = views.tuning(job, NOW)
    assert [t["name"] for t in v["leaderboard"]] == ["tune-1", "tune-0", "tune-2"]
    assert v["scatter"]["learningRate"]["scored"] == [(0.01, 0.2, "tune-1"), (0.1, 0.5, "tune-0")]
    assert v["curves"] == [("tune-1", [(1.0, 0.6), (2.0, 0.3)])]
    html = pages.tuning(v)
    assert 'id="param-learningRate"' in html and 'id="trial-curves"' in html


def test_tuning_page_shows_what_kubectl_get_shows_pruned_and_deleted_trials() -> None:
    """The status the TuningJob controller writes: counts, best, pruned trials, cleaned-up trials."""
    job = obj(
        "TuningJob",
        "search",
        {
            "objective": {"metric": "accuracy", "direction": "maximize"},
            "searchSpace": [
                {"name": "learningRate", "path": "spec.hyperparameters.learningRate", "log": True},
                {"name": "hiddenSize", "path": "spec.model.hiddenSize"},
            ],
            "maxTrials": 4,
            "registration": {"modelName": "digits-tuned"},
        },
        {
            "trialsCreated": 4,
            "trialsSucceeded": 2,
            "trialsRunning": 1,
            "trialsPruned": 1,
            "bestValue": 0.97,
            "bestTrial": {"name": "search-trial-1", "number": 1, "value": 0.97},
            "modelVersion": "digits-tuned-1",
            "trials": [
                {
                    "number": 0,
                    "name": "search-trial-0",
                    "state": "Complete",
                    "value": 0.9,
                    "deleted": True,
                    "parameters": {"learningRate": 0.001, "hiddenSize": 64},
                },
                {
                    "number": 1,
                    "name": "search-trial-1",
                    "state": "Complete",
                    "value": 0.97,
                    "parameters": {"learningRate": 0.01, "hiddenSize": 128},
                },
                {
                    "number": 2,
                    "name": "search-trial-2",
                    "state": "Pruned",
                    "reason": "Pruned at epoch 2",
                    "intermediate": [[1, 0.3], [2, 0.4]],
                    "parameters": {"learningRate": 0.1, "hiddenSize": 32},
                },
                {
                    "number": 3,
                    "name": "search-trial-3",
                    "state": "Running",
                    "intermediate": [[1, 0.8]],
                    "parameters": {"learningRate": 0.003, "hiddenSize": 96},
                },
            ],
        },
    )
    v = views.tuning(job, NOW)
    board = v["leaderboard"]
    assert [(t["name"], t.get("rank")) for t in board] == [
        ("search-trial-1", 1),
        ("search-trial-0", 2),
        ("search-trial-3", None),
        ("search-trial-2", None),
    ]
    assert board[1]["training_job"] == "" and board[1]["deleted"]  # no link to a deleted TrainingJob
    assert v["scatter"]["learningRate"]["log"] and not v["scatter"]["hiddenSize"]["log"]
    assert v["scatter"]["learningRate"]["pruned"] == [(0.1, 0.4, "search-trial-2")]
    html = pages.tuning(v)
    assert "/ns/ml/trainingjobs/search-trial-1" in html
    assert "/trainingjobs/search-trial-0" not in html and "deleted by cleanup" in html
    assert "Pruned at epoch 2" in html and "learningRate (log scale)" in html
    assert "0.97 (search-trial-1)" in html and "/ns/ml/models/digits-tuned#digits-tuned-1" in html
    assert views.overview({"tuningjobs": [job]}, NOW)[0]["rows"][0]["summary"] == (
        "2/4 done, 1 running, 1 pruned, best 0.97 (search-trial-1)"
    )


def test_charts_scale_into_the_box_and_say_what_they_show() -> None:
    svg = charts.line_chart(
        [charts.Series("loss", [(0, 3.0), (50, 1.0), (100, 0.5)])], title="Loss", x_label="step"
    )
    xs = [float(x) for x in re.findall(r'cx="([\d.]+)"', svg)]
    ys = [float(y) for y in re.findall(r'cy="([\d.]+)"', svg)]
    assert min(xs) >= charts.PAD_L and max(xs) <= charts.WIDTH - charts.PAD_R
    assert min(ys) >= charts.PAD_T and max(ys) <= charts.HEIGHT - charts.PAD_B
    assert 'role="img"' in svg and "last 0.5 at step 100" in svg
    assert "No points yet" in charts.line_chart([charts.Series("loss", [])], title="Loss", x_label="step")


def test_the_serving_page_names_its_runtime_predictor_image_and_grpc_endpoint() -> None:
    worker_pod = {
        "metadata": {"name": "svc-stable-1"},
        "spec": {
            "containers": [
                {
                    "name": "serve",
                    "ports": [
                        {"name": "http", "containerPort": 8080},
                        {"name": "grpc", "containerPort": 9000},
                    ],
                }
            ]
        },
        "status": {"phase": "Running"},
    }
    served = obj(
        "InferenceService",
        "svc",
        {"modelRef": {"model": "digits", "version": 1}, "precision": "fp16", "quantization": "none"},
        {"stable": {"modelVersion": "digits-1", "runtime": "modelops-worker"}},
    )
    html = pages.serving(views.serving(served, [worker_pod], [], {}, NOW))
    assert "modelops-worker" in html and "svc.ml.svc.cluster.local:9000" in html
    assert "fp16" in html and "Quantization" not in html  # the default is not worth a line
    custom = obj(
        "InferenceService",
        "own",
        {"predictor": {"image": "registry.example/my-predictor:1.2", "port": 8000}},
        {"stable": {"runtime": "custom"}},
    )
    v = views.serving(custom, [], [], {}, NOW)
    html = pages.serving(v)
    assert "registry.example/my-predictor:1.2" in html and "HTTP port 8000" in html
    assert v["grpc_port"] is None and "gRPC" not in html and "None" not in html


def test_a_tuned_version_traces_back_to_its_search() -> None:
    tuned = mv(1, {"accuracy": 0.97})
    tuned["metadata"]["labels"] = {"modelops.dev/tuningjob": "search", "modelops.dev/trial": "4"}
    html = pages.model(views.model("digits", [tuned], [], NOW), "ml", "/ns/ml/models/digits")
    lineage = html[html.index('class="lineage') :]
    assert re.search(
        r'TuningJob <a href="/ns/ml/tuningjobs/search">.*best trial <a href="/ns/ml/trainingjobs/train-1"',
        lineage,
    )
    plain = pages.model(views.model("digits", [mv(2, {})], [], NOW), "ml", "/ns/ml/models/digits")
    assert "TuningJob" not in plain and 'TrainingJob <a href="/ns/ml/trainingjobs/train-2"' in plain
