"""The TuningJob's pure planning: which trials to start, prune, stop, delete and register, and the
study rebuilt from what the cluster holds (so an operator restart neither repeats nor loses a trial).

Optuna runs for real here (samplers and pruners); the cluster is plain dicts, as the handlers pass it.
"""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any

import pytest

from modelops import status
from modelops.api.tuningjob import TuningJobSpec
from modelops.builders import tuningjob as builders
from modelops.controllers import tuningjob as tuning

NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
Obj = dict[str, Any]


def search(**spec: Any) -> Obj:
    base: Obj = {
        "searchSpace": [
            {
                "name": "lr",
                "path": "spec.hyperparameters.learningRate",
                "type": "float",
                "low": 1e-4,
                "high": 0.1,
                "log": True,
            },
            {
                "name": "width",
                "path": "spec.model.hiddenSize",
                "type": "int",
                "low": 16,
                "high": 256,
                "step": 16,
            },
        ],
        "objective": {"metric": "accuracy", "direction": "maximize"},
        "trialTemplate": {"spec": {"model": {"architecture": "mlp"}, "dataset": {"builtin": "digits"}}},
        "parallelTrials": 2,
        "maxTrials": 6,
        "algorithm": {"name": "tpe", "seed": 3, "startupTrials": 2},
    }
    base.update(spec)
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": "s", "namespace": "ns", "uid": "uid-1", "generation": 1},
        "spec": base,
    }


class Plane:
    """A TuningJob and its trial TrainingJobs, advanced by applying plans the way the handlers do."""

    def __init__(self, job: Obj) -> None:
        self.job = job
        self.trials: dict[str, Obj] = {}
        self.created: list[str] = []

    def step(
        self, observed: dict[str, tuple[int, float]] | None = None, now: datetime.datetime = NOW
    ) -> tuning.Plan:
        plan = tuning.plan(self.job, list(self.trials.values()), observed or {}, now=now)
        spec = TuningJobSpec.model_validate(self.job["spec"])
        for new in plan.create:
            manifest = builders.trial(self.job, spec, new.number, new.parameters, new.system_attrs)
            name = manifest["metadata"]["name"]
            if name not in self.trials:  # create-if-absent
                self.trials[name] = manifest
                self.created.append(name)
        for name, epoch in plan.prune.items():
            self._patch(name, builders.stop_patch(builders.ANNOTATION_PRUNED, str(epoch)))
        for name, reason in plan.stop.items():
            self._patch(name, builders.stop_patch(builders.ANNOTATION_STOPPED, reason))
        for name in plan.delete:
            self.trials.pop(name, None)
        st = self.job.setdefault("status", {})
        for key, value in plan.status_patch.items():
            if value is None:
                st.pop(key, None)
            else:
                st[key] = value
        if plan.register is not None:
            st["modelVersion"] = "registered"
        return plan

    def _patch(self, name: str, patch: Obj) -> None:
        trial = self.trials[name]
        trial["metadata"]["annotations"].update(patch["metadata"]["annotations"])
        trial["spec"]["runPolicy"]["suspend"] = True

    def finish(self, name: str, accuracy: float | None, phase: str = "Succeeded") -> None:
        st: Obj = {"phase": phase, "completionTime": "2026-12-07T12:00:00Z"}
        if accuracy is not None:
            st["metrics"] = {"accuracy": accuracy}
        if phase == "Failed":
            st["failure"] = {"reason": "OOMKilled", "message": "out of memory"}
        self.trials[name]["status"] = st

    def running(self) -> list[str]:
        return [r["name"] for r in self.job["status"]["trials"] if r["state"] == "Running"]

    def params(self, name: str) -> Obj:
        return dict(
            json.loads(self.trials[name]["metadata"]["annotations"][builders.ANNOTATION_TRIAL])["parameters"]
        )


def test_first_plan_starts_parallel_trials_with_parameters_placed_by_path() -> None:
    plane = Plane(search())
    plan = plane.step()
    assert [t.name for t in plan.create] == ["s-trial-0", "s-trial-1"]
    trial = plane.trials["s-trial-0"]
    params = plane.params("s-trial-0")
    assert trial["spec"]["hyperparameters"]["learningRate"] == pytest.approx(params["lr"])
    assert trial["spec"]["model"]["hiddenSize"] == params["width"] and isinstance(params["width"], int)
    assert trial["spec"]["output"]["createModelVersion"] is False  # the search registers the best
    assert trial["metadata"]["ownerReferences"][0]["kind"] == "TuningJob"
    assert trial["metadata"]["labels"][builders.LABEL_TUNINGJOB] == "s"
    assert plane.params("s-trial-0") != plane.params("s-trial-1")
    st = plane.job["status"]
    assert (st["phase"], st["trialsCreated"], st["trialsRunning"]) == ("Running", 2, 2)
    assert status.kstatus(st, 1) == "InProgress"


def test_a_finished_trial_frees_its_slot_and_the_search_ends_at_max_trials_with_the_best() -> None:
    plane = Plane(search(registration={"modelName": "digits-tuned"}))
    plane.step()
    accuracies = iter([0.90, 0.95, 0.80, 0.97, 0.85, 0.93])
    while plane.job["status"].get("phase") == "Running":
        for name in plane.running():
            plane.finish(name, next(accuracies))
        plan = plane.step()
        assert len(plane.running()) <= 2
    st = plane.job["status"]
    assert plane.created == [f"s-trial-{n}" for n in range(6)]
    assert (st["phase"], st["trialsSucceeded"], st["trialsCreated"]) == ("Succeeded", 6, 6)
    assert st["bestTrial"]["name"] == "s-trial-3" and st["bestValue"] == 0.97
    assert [e["value"] for e in st["leaderboard"]] == [0.97, 0.95, 0.93, 0.90, 0.85]
    assert status.get_condition(st["conditions"], "Ready")["reason"] == "MaxTrialsReached"
    assert status.kstatus(st, 1) == "Current"
    assert plan.register is not None and plan.register.trial == "s-trial-3"
    assert plane.step().register is None  # registered once


def test_restart_rebuilds_the_study_without_repeating_or_losing_a_trial() -> None:
    plane = Plane(search())
    plane.step()
    plane.finish("s-trial-0", 0.9)
    plane.step()
    assert sorted(plane.trials) == ["s-trial-0", "s-trial-1", "s-trial-2"]
    # The operator created trial 3 after trial 1 finished, then died before writing the status.
    plane.finish("s-trial-1", 0.92)
    stale_status = copy.deepcopy(plane.job["status"])
    plane.step()
    assert "s-trial-3" in plane.trials
    plane.job["status"] = stale_status
    # The restarted operator plans from the cluster: trial 3 is adopted, not created again; no new
    # trial is needed (two running), and numbering continues after it.
    plan = plane.step()
    assert plan.create == []
    records = plane.job["status"]["trials"]
    assert [r["number"] for r in records] == [0, 1, 2, 3]
    assert records[3]["state"] == "Running" and records[3]["parameters"] == plane.params("s-trial-3")
    plane.finish("s-trial-2", 0.5)
    assert [t.name for t in plane.step().create] == ["s-trial-4"]
    assert len(plane.created) == len(set(plane.created)) == 5


def test_the_same_state_plans_the_same_trial_so_a_repeated_plan_creates_no_duplicate() -> None:
    plane = Plane(search())
    job = copy.deepcopy(plane.job)
    first = tuning.plan(job, [], {}, now=NOW)
    again = tuning.plan(job, [], {}, now=NOW)
    assert [(t.name, t.parameters) for t in first.create] == [(t.name, t.parameters) for t in again.create]


def test_median_pruner_stops_a_trial_below_the_median_and_counts_it_pruned() -> None:
    plane = Plane(search(pruner={"name": "median", "startupTrials": 2, "warmupSteps": 1}, maxTrials=5))
    plane.step()
    for epoch in (1, 2, 3):
        plane.step({"s-trial-0": (epoch, 0.5 + 0.1 * epoch), "s-trial-1": (epoch, 0.6 + 0.1 * epoch)})
    plane.finish("s-trial-0", 0.8)
    plane.finish("s-trial-1", 0.9)
    plane.step()
    assert plane.running() == ["s-trial-2", "s-trial-3"]
    plan = plane.step({"s-trial-2": (2, 0.2), "s-trial-3": (2, 0.95)})
    assert plan.prune == {"s-trial-2": 2}
    assert plane.trials["s-trial-2"]["spec"]["runPolicy"]["suspend"] is True
    assert any(e.reason == "TrialPruned" for e in plan.events)
    st = plane.job["status"]
    record = st["trials"][2]
    assert (record["state"], record["intermediate"]) == ("Pruned", [[2, 0.2]])
    assert st["trialsPruned"] == 1
    # The freed slot goes to the next trial, and the pruned one stays pruned after a rebuild.
    plane.step()
    assert plane.job["status"]["trials"][2]["state"] == "Pruned"
    assert "s-trial-4" in plane.trials


def test_too_many_failed_trials_fail_the_search_and_stop_the_running_ones() -> None:
    plane = Plane(search(maxFailedTrials=1, maxTrials=10))
    plane.step()
    plane.finish("s-trial-0", None, phase="Failed")
    plane.step()
    plane.finish("s-trial-1", None, phase="Failed")
    plan = plane.step()
    st = plane.job["status"]
    assert st["phase"] == "Failed" and status.kstatus(st, 1) == "Failed"
    assert status.get_condition(st["conditions"], "Stalled")["reason"] == "MaxFailedTrialsReached"
    assert status.get_condition(st["conditions"], "Failed")["status"] == "True"
    assert plan.stop == {"s-trial-2": "MaxFailedTrialsReached"}
    assert st["trials"][0]["reason"].startswith("OOMKilled")
    assert plan.create == []


def test_a_trial_succeeding_without_the_objective_metric_is_a_failure_saying_so() -> None:
    plane = Plane(search())
    plane.step()
    plane.finish("s-trial-0", None)
    plane.step()
    record = plane.job["status"]["trials"][0]
    assert record["state"] == "Failed" and "ObjectiveMissing" in record["reason"]


def test_time_budget_ends_the_search_with_the_best_so_far() -> None:
    plane = Plane(search(activeDeadlineSeconds=600, maxTrials=20))
    plane.step()
    plane.finish("s-trial-0", 0.9)
    plane.step(now=NOW + datetime.timedelta(seconds=60))
    plan = plane.step(now=NOW + datetime.timedelta(seconds=601))
    st = plane.job["status"]
    assert st["phase"] == "Succeeded"
    assert status.get_condition(st["conditions"], "Ready")["reason"] == "BudgetExhausted"
    assert set(plan.stop) == {"s-trial-1", "s-trial-2"}
    assert {r["state"] for r in st["trials"][1:]} == {"Stopped"}


def test_grid_search_visits_each_point_once_and_ends_when_exhausted() -> None:
    space = [
        {
            "name": "opt",
            "path": "spec.hyperparameters.optimizer",
            "type": "categorical",
            "choices": ["adam", "sgd"],
        },
        {
            "name": "batch",
            "path": "spec.hyperparameters.batchSize",
            "type": "categorical",
            "choices": ["32", "64"],
        },
    ]
    plane = Plane(search(searchSpace=space, algorithm={"name": "grid", "seed": 1}, maxTrials=10))
    seen = []
    while plane.job.get("status", {}).get("phase") != "Succeeded":
        plane.step()
        for name in plane.running():
            seen.append((plane.params(name)["opt"], plane.params(name)["batch"]))
            assert plane.trials[name]["spec"]["hyperparameters"]["batchSize"] in (32, 64)  # typed
            plane.finish(name, 0.5)
    assert sorted(seen) == [("adam", "32"), ("adam", "64"), ("sgd", "32"), ("sgd", "64")]
    ready = status.get_condition(plane.job["status"]["conditions"], "Ready")
    assert ready["reason"] == "SearchSpaceExhausted"


@pytest.mark.parametrize("algorithm", ["random", "cmaes", "tpe"])
def test_every_algorithm_proposes_values_inside_the_space(algorithm: str) -> None:
    plane = Plane(
        search(algorithm={"name": algorithm, "seed": 5, "startupTrials": 1}, parallelTrials=1, maxTrials=4)
    )
    for _ in range(4):
        plane.step()
        for name in plane.running():
            p = plane.params(name)
            assert 1e-4 <= p["lr"] <= 0.1 and 16 <= p["width"] <= 256 and p["width"] % 16 == 0
            plane.finish(name, 0.5 + p["lr"])
    assert len(set(json.dumps(plane.params(n), sort_keys=True) for n in plane.trials)) == 4


def test_keep_best_deletes_the_others_only_once_their_result_is_in_the_status() -> None:
    plane = Plane(search(cleanupPolicy="keepBest", keepBestTrials=1, maxTrials=3, parallelTrials=3))
    plane.step()
    for name, acc in (("s-trial-0", 0.8), ("s-trial-1", 0.9), ("s-trial-2", 0.7)):
        plane.finish(name, acc)
    first = plane.step()
    assert first.delete == []  # the results are not recorded yet
    second = plane.step()
    assert sorted(second.delete) == ["s-trial-0", "s-trial-2"]
    assert list(plane.trials) == ["s-trial-1"]
    assert [r["state"] for r in plane.job["status"]["trials"]] == ["Complete"] * 3
    assert [r.get("deleted") for r in plane.job["status"]["trials"]] == [True, None, True]
    assert plane.step().delete == []  # deleted once


def test_a_path_naming_no_field_stalls_the_search_naming_the_parameter() -> None:
    spec = TuningJobSpec.model_validate(
        search(
            searchSpace=[
                {
                    "name": "lr",
                    "path": "spec.hyperparameters.learningRat",
                    "type": "float",
                    "low": 0.1,
                    "high": 0.2,
                }
            ]
        )["spec"]
    )
    conclusion = tuning.decide(spec)
    assert conclusion.state is status.State.STALLED
    assert "spec.searchSpace[lr].path spec.hyperparameters.learningRat" in conclusion.message
    bad_value = TuningJobSpec.model_validate(
        search(
            searchSpace=[
                {
                    "name": "opt",
                    "path": "spec.hyperparameters.optimizer",
                    "type": "categorical",
                    "choices": ["adam", "lbfgs"],
                }
            ]
        )["spec"]
    )
    assert "spec.searchSpace[opt]" in tuning.decide(bad_value).message


def test_epoch_value_reads_completed_epochs_from_the_workers_series() -> None:
    series = {
        "modelops_training_step": 60.0,
        "modelops_training_total_steps": 200.0,
        "modelops_training_total_epochs": 10.0,
        "modelops_training_val_accuracy": 0.91,
    }
    assert tuning.epoch_value(series, "accuracy") == (3, 0.91)
    assert tuning.epoch_value({**series, "modelops_training_step": 5.0}, "accuracy") is None
    assert tuning.epoch_value(series, "f1") is None


def test_a_seeded_search_proposes_the_same_trials_again_and_another_seed_others() -> None:
    def proposals(seed: int) -> list[Obj]:
        plane = Plane(search(algorithm={"name": "tpe", "seed": seed, "startupTrials": 2}, parallelTrials=1))
        for value in (0.9, 0.8, 0.95):
            plane.step()
            plane.finish(plane.running()[0], value)
        plane.step()
        return [plane.params(name) for name in sorted(plane.trials)]

    assert proposals(1) == proposals(1)
    assert proposals(1) != proposals(2)


def test_a_trial_the_api_server_refuses_is_a_failed_trial_counted_against_the_limit() -> None:
    plane = Plane(search(maxFailedTrials=0))
    plan = tuning.plan(plane.job, [], {}, now=NOW)
    patch = tuning.reject(plan.status_patch, 0, "spec.precision: fp16 needs GPUs")
    assert patch["trials"][0]["state"] == "Failed"
    assert patch["trials"][0]["reason"] == "TrialRejected: spec.precision: fp16 needs GPUs"
    assert (patch["trialsFailed"], patch["trialsRunning"]) == (1, 1)
    # Written, it stays failed though no TrainingJob exists, and the limit ends the search with it.
    plane.job["status"] = patch
    plane.trials = {}
    plane.step()
    st = plane.job["status"]
    assert st["phase"] == "Failed"
    assert status.get_condition(st["conditions"], "Stalled")["reason"] == "MaxFailedTrialsReached"


@pytest.mark.parametrize(
    "pruner",
    [
        {"name": "successiveHalving", "minResource": 1, "reductionFactor": 2},
        {"name": "hyperband", "minResource": 1, "maxResource": 4, "reductionFactor": 2},
    ],
    ids=["successiveHalving", "hyperband"],
)
def test_halving_pruners_stop_a_clearly_worse_trial_and_keep_their_rungs_across_plans(pruner: Obj) -> None:
    plane = Plane(search(pruner=pruner, parallelTrials=1, maxTrials=12))
    pruned: list[str] = []
    for good in (0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96):
        plane.step()
        name = plane.running()[0]
        for epoch in (1, 2, 3, 4):
            plan = plane.step({name: (epoch, good - 0.1 * (4 - epoch))})
            pruned += list(plan.prune)
            if plan.prune:
                break
        else:
            plane.finish(name, good)
    plane.step()
    worse = plane.running()[0]
    pruned_at = None
    for epoch in (1, 2, 3, 4):  # a Hyperband bracket may start pruning only at a later rung
        if worse in plane.step({worse: (epoch, 0.05)}).prune:
            pruned_at = epoch
            break
    assert pruned_at is not None, plane.job["status"]["trials"][-1]
    record = next(r for r in plane.job["status"]["trials"] if r["name"] == worse)
    assert record["state"] == "Pruned"
    # The rungs the pruner reached are kept in status, so a rebuilt study judges the same way.
    assert any(r.get("systemAttrs") for r in plane.job["status"]["trials"])


def test_every_trial_is_a_trainingjob_the_api_server_accepts_as_it_is() -> None:
    from modelops.api import TRAININGJOB
    from modelops.api.crdgen import crd
    from modelops_local.schema import validate_custom_resource

    schema = crd(TRAININGJOB)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    space = [
        *search()["spec"]["searchSpace"],
        {
            "name": "batch",
            "path": "spec.hyperparameters.batchSize",
            "type": "categorical",
            "choices": ["32", "64"],
        },
    ]
    plane = Plane(
        search(
            searchSpace=space,
            trialTemplate={
                "metadata": {"labels": {"team": "ml"}},
                "spec": {"model": {"architecture": "mlp"}, "dataset": {"builtin": "digits"}},
            },
        )
    )
    plane.step()
    for trial in plane.trials.values():
        result = validate_custom_resource(schema, trial)
        assert [str(e) for e in result.errors] == [] and result.unknown_fields == []
        assert trial["metadata"]["labels"]["team"] == "ml"
        assert isinstance(trial["spec"]["hyperparameters"]["batchSize"], int)


def test_reaching_the_goal_ends_the_search_and_stops_the_other_trials() -> None:
    plane = Plane(search(objective={"metric": "accuracy", "direction": "maximize", "goal": 0.95}))
    plane.step()
    plane.finish("s-trial-0", 0.96)
    plan = plane.step()
    st = plane.job["status"]
    assert st["phase"] == "Succeeded"
    assert status.get_condition(st["conditions"], "Ready")["reason"] == "GoalReached"
    assert plan.stop == {"s-trial-1": "GoalReached"} and plan.create == []


def test_delete_finished_keeps_only_the_best_trial_while_its_model_is_to_be_registered() -> None:
    plane = Plane(search(cleanupPolicy="deleteFinished", registration={}, maxTrials=2))
    plane.step()
    plane.finish("s-trial-0", 0.7)
    plane.finish("s-trial-1", 0.9)
    first = plane.step()
    assert first.register is not None and first.register.trial == "s-trial-1"
    assert plane.step().delete == ["s-trial-0"]
    assert list(plane.trials) == ["s-trial-1"]
