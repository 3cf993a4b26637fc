"""Data-parallel training: `modelops-worker train` starts torchrun itself and both ranks train."""

from __future__ import annotations

import json


def test_two_process_ddp_with_gloo_via_torchrun(worker):
    cfg = worker.config(
        hyperparameters={"epochs": 3, "batchSize": 32, "learningRate": 0.003, "seed": 7},
        distributed={"nodes": 1, "procsPerNode": 2, "backend": "auto"},
    )
    proc = worker.start(cfg)
    log, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, log
    res = worker.result()
    assert res["status"] == "Succeeded" and res["worldSize"] == 2 and res["rank"] == 0
    # DistributedSampler gives each rank half of the 1438 training rows per epoch.
    assert res["samplesPerRank"] == [3 * 719, 3 * 719]
    # Each rank takes ceil(719 / 32) = 23 steps per epoch, in lockstep.
    assert res["steps"] == 3 * 23
    assert res["metrics"]["accuracy"] > 0.85
    assert "rank 0 " in log and "rank 1 " in log, "both ranks log under their own name"
    # Only rank 0 writes checkpoints and the artifact.
    assert worker.checkpoints() == [69]  # no interval was due: the end of the run writes one
    assert (worker.out / res["artifact"]["path"]).is_file()

    # A longer run of the same job resumes: rank 0 loads the checkpoint and hands it to rank 1, and
    # each rank trains only the new epoch on its own shard.
    cfg["hyperparameters"]["epochs"] = 4
    proc = worker.start(cfg)
    log, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, log
    res = worker.result()
    assert res["resumedFromStep"] == 69 and res["steps"] == 92
    assert res["samplesPerRank"] == [719, 719]


def test_a_permanent_failure_inside_torchrun_keeps_its_exit_code(worker):
    cfg = worker.config(
        dataset={"file": {"claimName": "data", "path": "missing.csv"}},
        distributed={"nodes": 1, "procsPerNode": 2},
    )
    proc = worker.start(cfg)
    log, _ = proc.communicate(timeout=240)
    # torchrun itself exits 1 on any failure; the pod must still say "permanent, bad data".
    assert proc.returncode == 65, log
    assert json.loads((worker.tmp / "termination-log").read_text())["reason"] == "DatasetNotFound"
