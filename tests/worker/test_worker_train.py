"""Training with real PyTorch on real data: the three architectures, accumulation, early stopping, export."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from modelops_worker import cli

# Digits with a 2x128 MLP reaches about 0.97 validation accuracy in 10 epochs (seed 7); 0.9 leaves
# room for platform differences while still failing on any real regression (chance is 0.1).
DIGITS_ACCURACY = 0.9


def test_digits_mlp_reaches_accuracy_and_exports_a_self_contained_model(worker):
    cfg = worker.config(
        model={"architecture": "mlp", "hiddenSize": 128, "layers": 2, "dropout": 0.1},
        hyperparameters={"epochs": 10, "batchSize": 64, "learningRate": 0.003, "seed": 7},
    )
    run = worker.train(cfg)  # the console script itself runs in the SIGKILL/SIGTERM/DDP tests
    assert run.code == 0, run.result
    res = run.result
    assert res["status"] == "Succeeded" and res["exitCode"] == 0
    assert res["metrics"]["accuracy"] > DIGITS_ACCURACY, res["metrics"]
    assert {"precision", "recall", "f1", "loss"} <= set(res["metrics"])
    assert res["epochs"] == 10 and res["steps"] == 10 * 23  # 1438 training rows / 64 per step
    assert 0 <= res["trainLoss"] < 0.5  # the last step's loss, for the job's status
    assert len(res["datasetDigest"]) == 64

    art = worker.out / res["artifact"]["path"]
    data = art.read_bytes()
    assert hashlib.sha256(data).hexdigest() == res["artifact"]["sha256"]
    assert len(data) == res["artifact"]["sizeBytes"] and res["artifact"]["format"] == "torchscript"
    card = json.loads((worker.out / res["artifact"]["modelCard"]).read_text())
    assert card["dataset"]["digest"] == res["datasetDigest"]
    assert card["hyperparameters"]["learningRate"] == 0.003 and card["codeVersion"]
    assert card["artifact"]["sha256"] == res["artifact"]["sha256"]

    # A server needs nothing but the file: raw features in, logits out (normalisation is inside).
    model = torch.jit.load(str(art))
    digits = load_digits()
    with torch.no_grad():
        pred = model(torch.tensor(digits.data, dtype=torch.float32)).argmax(1).numpy()
    assert (pred == digits.target).mean() > DIGITS_ACCURACY


@pytest.mark.parametrize(
    ("architecture", "precision", "fmt"),
    [("cnn", "fp32", "state_dict"), ("transformer", "bf16", "torchscript")],
)
def test_cnn_and_transformer_train_an_epoch_and_verify(worker, capsys, architecture, precision, fmt):
    cfg = worker.config(
        model={"architecture": architecture, "hiddenSize": 16, "layers": 1, "heads": 2, "dropout": 0.0},
        hyperparameters={"epochs": 1, "batchSize": 64, "learningRate": 0.01, "seed": 7},
        precision=precision,
        output={"modelName": "digits", "format": fmt},
    )
    run = worker.train(cfg)
    assert run.code == 0, run.result
    assert run.result["steps"] == 23 and run.result["artifact"]["format"] == fmt
    # One epoch is enough to be far above chance (0.1) on digits.
    assert run.result["metrics"]["accuracy"] > 0.3, run.result["metrics"]

    art = run.out / run.result["artifact"]["path"]
    assert cli.main(["verify", "--artifact", str(art), "--sha256", run.result["artifact"]["sha256"]]) == 0
    verdict = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert verdict["status"] == "Succeeded" and verdict["artifact"]["format"] == fmt
    assert verdict["numClasses"] == 10


def test_cnn_on_a_table_convolves_over_the_feature_vector(worker):
    cfg = worker.config(
        model={"architecture": "cnn", "hiddenSize": 16, "layers": 1, "dropout": 0.0},
        dataset={"builtin": "breast_cancer"},
        hyperparameters={"epochs": 3, "batchSize": 32, "learningRate": 0.01, "seed": 7},
    )
    run = worker.train(cfg)
    assert run.code == 0, run.result
    assert run.result["metrics"]["auc"] > 0.8
    model = torch.jit.load(str(run.out / run.result["artifact"]["path"]))
    assert tuple(model(torch.zeros(3, 30)).shape) == (3, 2)


def test_verify_refuses_an_artifact_whose_digest_changed(worker, capsys):
    run = worker.train(worker.config(hyperparameters={"epochs": 1, "seed": 7}))
    art = run.out / run.result["artifact"]["path"]
    with art.open("ab") as fh:
        fh.write(b"\0")
    assert cli.main(["verify", "--artifact", str(art), "--sha256", run.result["artifact"]["sha256"]]) == 65
    verdict = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert verdict["reason"] == "ArtifactDigestMismatch" and "sha256" in verdict["message"]
    assert worker.result()["reason"] == "ArtifactDigestMismatch"


def test_gradient_accumulation_makes_fewer_larger_steps(worker):
    cfg = worker.config(
        hyperparameters={"epochs": 2, "batchSize": 64, "gradientAccumulationSteps": 4, "seed": 7}
    )
    run = worker.train(cfg)
    assert run.code == 0
    # 23 micro-batches per epoch -> 6 optimizer steps (the last one takes the remaining 3).
    assert run.result["steps"] == 12


def test_early_stopping_ends_the_run_when_the_metric_stops_improving(worker):
    cfg = worker.config(
        hyperparameters={
            "epochs": 50,
            "seed": 7,
            # No epoch can improve validation loss by 10: the run stops after patience epochs.
            "earlyStopping": {"metric": "val_loss", "patience": 2, "minDelta": 10.0},
        }
    )
    run = worker.train(cfg)
    assert run.code == 0
    assert run.result["epochs"] == 3 and "stopped early" in run.result["message"]


def test_sgd_with_weight_decay_on_a_binary_task_reports_auc(worker):
    cfg = worker.config(
        dataset={"builtin": "breast_cancer"},
        hyperparameters={
            "epochs": 5,
            "optimizer": "sgd",
            "learningRate": 0.05,
            "weightDecay": 0.001,
            "seed": 7,
        },
    )
    run = worker.train(cfg)
    assert run.code == 0
    assert run.result["metrics"]["auc"] > 0.9
    assert np.isfinite(run.result["metrics"]["f1"])
