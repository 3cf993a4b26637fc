"""The operator -> worker contract: bad configuration is a permanent failure (exit 64) naming the field;
a run configuration built from a TrainingJob spec is accepted as is; the result fits its limit."""

from __future__ import annotations

import json

import pytest

from modelops.api.runconfig import TrainResult, TrainRunConfig, is_retryable
from modelops.api.trainingjob import TrainingJobSpec
from modelops_worker.environment import write_result


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ({"model": {"architecture": "rnn"}}, "model.architecture"),
        ({"hyperparameters": {"learningRate": -1}}, "hyperparameters.learningRate"),
        ({"precision": "fp16"}, "precision fp16 needs a GPU"),
        ({"model": {"architecture": "transformer", "hiddenSize": 30, "heads": 4}}, "model.hiddenSize=30"),
        ({"distributed": {"backend": "nccl"}}, "nccl needs GPUs"),
        ({"dataset": {"file": {"claimName": "d", "path": "a/../../etc/passwd"}}}, "stay inside"),
    ],
)
def test_bad_config_exits_64_naming_the_field(worker, change, expect):
    run = worker.train(worker.config(**change))
    assert run.code == 64, run.result
    assert run.result["reason"] == "InvalidRunConfig" and run.result["exitCode"] == 64
    assert expect in run.result["message"]
    assert not is_retryable(run.code)


def test_missing_environment_exits_64(worker, monkeypatch):
    from modelops_worker import cli

    monkeypatch.setenv("MODELOPS_TERMINATION_LOG", str(worker.tmp / "termination-log"))
    monkeypatch.delenv("MODELOPS_RUN_CONFIG", raising=False)
    assert cli.main(["train"]) == 64
    assert "MODELOPS_RUN_CONFIG is not set" in worker.result()["message"]
    monkeypatch.setenv("MODELOPS_RUN_CONFIG", json.dumps(worker.config()))
    monkeypatch.delenv("MODELOPS_CHECKPOINT_DIR", raising=False)
    assert cli.main(["train"]) == 64
    assert "MODELOPS_CHECKPOINT_DIR" in worker.result()["message"]


def test_run_config_from_a_trainingjob_spec_is_what_the_worker_runs(worker):
    spec = TrainingJobSpec.model_validate(
        {
            "model": {"architecture": "mlp", "hiddenSize": 32},
            "dataset": {"builtin": "iris"},
            "hyperparameters": {"epochs": 2, "batchSize": 16},
            "precision": "bf16",
            "checkpoint": {"intervalSteps": 5, "keep": 2},
        }
    )
    cfg = TrainRunConfig.from_spec("iris", "team-a", "uid-1", spec)
    assert cfg.output.model_name == "iris" and cfg.device == "cpu"
    wire = json.loads(cfg.model_dump_json(by_alias=True, exclude_none=True))
    run = worker.train(wire)
    assert run.code == 0, run.result
    assert run.result["checkpoint"]["step"] == run.result["steps"]
    # keep=2 is honoured on disk.
    assert len(worker.checkpoints()) == 2
    TrainResult.model_validate(run.result)  # the operator's parser accepts what the worker wrote


def test_from_spec_refuses_a_custom_image_spec():
    spec = TrainingJobSpec.model_validate({"image": "example.com/train:1"})
    with pytest.raises(ValueError, match=r"spec\.model and spec\.dataset"):
        TrainRunConfig.from_spec("x", "y", "z", spec)


def test_result_is_cut_to_the_termination_message_limit(tmp_path):
    path = tmp_path / "termination-log"
    write_result(
        path,
        TrainResult(
            status="Failed",
            reason="TrainingError",
            message="x" * 10000,
            exit_code=1,
            samples_per_rank=list(range(64)),
        ),
    )
    text = path.read_text()
    assert len(text.encode()) <= 4096
    parsed = json.loads(text)
    assert parsed["reason"] == "TrainingError" and parsed["message"].endswith("...")


def test_cpu_limit_is_read_from_the_cgroup(tmp_path):
    from modelops_worker.train import cgroup_cpus

    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert cgroup_cpus(str(tmp_path)) == 3  # 2.5 CPUs: round up, a half-used core still helps
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpus(str(tmp_path)) is None
