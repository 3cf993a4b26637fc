"""The launcher's decisions: when to start torchrun, with which flags, and which rank's result the pod
reports (the part a two-process run cannot easily provoke: a crash on one rank only)."""

from __future__ import annotations

from modelops.api.runconfig import TrainRunConfig
from modelops_worker.launch import needs_torchrun, pick_result, torchrun_command


def _cfg(**distributed):
    return TrainRunConfig.model_validate(
        {
            "job": {"name": "j", "namespace": "n"},
            "model": {"architecture": "mlp"},
            "dataset": {"builtin": "iris"},
            "output": {"modelName": "j"},
            "device": "cpu",
            "distributed": distributed,
        }
    )


def test_torchrun_only_for_more_than_one_process(monkeypatch):
    for k in ("LOCAL_RANK", "PET_NNODES", "PET_NPROC_PER_NODE", "PET_MASTER_ADDR"):
        monkeypatch.delenv(k, raising=False)
    assert not needs_torchrun(_cfg())
    assert needs_torchrun(_cfg(procsPerNode=2))
    monkeypatch.setenv("PET_NNODES", "3")  # the operator's variables win over the config
    assert needs_torchrun(_cfg())
    cmd = torchrun_command(_cfg())
    assert "--nnodes=3" in cmd and "--nproc-per-node=1" in cmd and "--standalone" not in cmd
    monkeypatch.setenv("LOCAL_RANK", "0")  # inside torchrun: train, do not recurse
    assert not needs_torchrun(_cfg(procsPerNode=2))


def test_single_node_without_master_is_standalone(monkeypatch):
    for k in ("PET_NNODES", "PET_NPROC_PER_NODE", "PET_MASTER_ADDR"):
        monkeypatch.delenv(k, raising=False)
    cmd = torchrun_command(_cfg(procsPerNode=2))
    assert "--standalone" in cmd and "--max-restarts=0" in cmd
    assert cmd[-2:] == ["modelops_worker.cli", "train"]


OK = {"status": "Succeeded", "reason": "Succeeded", "exitCode": 0}
TERM = {"status": "Failed", "reason": "Terminated", "exitCode": 143}
CRASH = {"status": "Failed", "reason": "TrainingError", "message": "CUDA error", "exitCode": 1}
BAD_DATA = {"status": "Failed", "reason": "DataValidationFailed", "exitCode": 65}


def test_the_result_that_explains_the_outcome_is_reported():
    assert pick_result({0: OK, 1: OK}, rc=0) is OK
    # Rank 1 crashed; rank 0 was stopped by torchrun (or killed before it could write): the crash is
    # the story, not the stop.
    assert pick_result({0: TERM, 1: CRASH}, rc=1) is CRASH
    assert pick_result({1: CRASH}, rc=1) is CRASH
    # A SIGTERM to the pod stops every rank: rank 0's account; a rank that lost its stopped peer
    # before it saw the signal itself is an echo, not the cause.
    term1 = dict(TERM)
    assert pick_result({0: TERM, 1: term1}, rc=1, stopped=True) is TERM
    assert pick_result({0: TERM, 1: CRASH}, rc=1, stopped=True) is TERM
    # A permanent failure is never hidden behind a retryable one.
    assert pick_result({0: CRASH, 1: BAD_DATA}, rc=1) is BAD_DATA
    assert pick_result({}, rc=1) is None
