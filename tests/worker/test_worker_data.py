"""Data validation before the first step: permanent failures (exit 65) that name the column and numbers."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from sklearn.datasets import load_iris, load_wine


def _write_csv(path, header, rows):
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _file_cfg(worker, path: str, fmt: str = "csv", **validation):
    cfg = worker.config(
        dataset={"file": {"claimName": "data", "path": path, "format": fmt, "labelColumn": "species"}},
        hyperparameters={"epochs": 2, "batchSize": 16, "learningRate": 0.01, "seed": 7},
    )
    if validation:
        cfg["dataValidation"] = validation
    return cfg


def _iris_rows():
    iris = load_iris()
    return [[*map(float, x), iris.target_names[y]] for x, y in zip(iris.data, iris.target, strict=True)]


def test_csv_with_class_names_trains(worker):
    _write_csv(worker.data / "iris.csv", ["sl", "sw", "pl", "pw", "species"], _iris_rows())
    run = worker.train(_file_cfg(worker, "iris.csv"))
    assert run.code == 0, run.result
    assert run.result["metrics"]["accuracy"] > 0.6


def test_csv_with_nan_fails_naming_the_column_and_count(worker):
    rows = _iris_rows()
    for r in rows[:7]:
        r[2] = "nan"
    rows[10][2] = ""  # an empty cell is missing data too
    rows[11][0] = "inf"
    _write_csv(worker.data / "iris.csv", ["sl", "sw", "petal_length", "pw", "species"], rows)
    run = worker.train(_file_cfg(worker, "iris.csv"))
    assert run.code == 65
    res = run.result
    assert res["status"] == "Failed" and res["reason"] == "DataValidationFailed"
    assert "'petal_length': 8" in res["message"] and "'sl': 1" in res["message"]
    assert not run.ckpt.exists() or not any(run.ckpt.iterdir()), "no step may run on bad data"


def test_missing_file_is_dataset_not_found(worker):
    run = worker.train(_file_cfg(worker, "data/nowhere.csv"))
    assert run.code == 65
    assert run.result["reason"] == "DatasetNotFound" and "data/nowhere.csv" in run.result["message"]


@pytest.mark.parametrize(
    ("mutate", "validation", "expect"),
    [
        (lambda rows: rows[::20], {}, "8 rows, fewer than dataValidation.minRows=10"),
        (lambda rows: rows[::3] * 4, {}, "150 of 200 rows are duplicates"),
        (
            lambda rows: rows[:100] + rows[100:101],
            {"maxClassImbalance": 10},
            "class imbalance 50.0 (largest class 50 rows, smallest 1)",
        ),
    ],
    ids=["min-rows", "duplicates", "imbalance"],
)
def test_statistical_checks_fail_with_the_numbers(worker, mutate, validation, expect):
    _write_csv(worker.data / "iris.csv", ["sl", "sw", "pl", "pw", "species"], mutate(_iris_rows()))
    run = worker.train(_file_cfg(worker, "iris.csv", **validation))
    assert run.code == 65, run.result
    assert run.result["reason"] == "DataValidationFailed"
    assert expect in run.result["message"]


def test_statistical_checks_can_be_turned_off_but_nan_checks_cannot(worker):
    rows = _iris_rows()[:50] * 5 + _iris_rows()[50:]
    _write_csv(worker.data / "iris.csv", ["sl", "sw", "pl", "pw", "species"], rows)
    assert worker.train(_file_cfg(worker, "iris.csv")).code == 65  # 200 of 350 rows duplicated
    assert worker.train(_file_cfg(worker, "iris.csv", enabled=False)).code == 0
    rows[0][1] = "nan"
    _write_csv(worker.data / "iris.csv", ["sl", "sw", "pl", "pw", "species"], rows)
    assert worker.train(_file_cfg(worker, "iris.csv", enabled=False)).code == 65


def test_fractional_labels_are_refused(worker):
    wine = load_wine()
    y = wine.target.astype(float)
    y[3] = 1.5
    np.savez(worker.data / "wine.npz", X=wine.data, y=y)
    run = worker.train(_file_cfg(worker, "wine.npz", fmt="npz"))
    assert run.code == 65
    assert "non-integral" in run.result["message"] and "1.5" in run.result["message"]


def test_npz_dataset_trains_and_the_digest_follows_the_data(worker):
    wine = load_wine()
    np.savez(worker.data / "wine.npz", X=wine.data, y=wine.target)
    first = worker.train(_file_cfg(worker, "wine.npz", fmt="npz"))
    assert first.code == 0, first.result
    assert first.result["metrics"]["accuracy"] > 0.6
    np.savez(worker.data / "wine2.npz", X=wine.data[::-1], y=wine.target[::-1])
    other = _file_cfg(worker, "wine2.npz", fmt="npz")
    second = worker.train(other)
    assert second.result["datasetDigest"] != first.result["datasetDigest"]


def test_parquet_dataset_trains(worker):
    pa = pytest.importorskip("pyarrow")  # in the worker image; pyproject's worker extra should list it
    pq = pytest.importorskip("pyarrow.parquet")
    iris = load_iris()
    table = pa.table(
        {
            **{f"f{i}": iris.data[:, i] for i in range(4)},
            "species": [str(iris.target_names[t]) for t in iris.target],
        }
    )
    pq.write_table(table, worker.data / "iris.parquet")
    run = worker.train(_file_cfg(worker, "iris.parquet", fmt="parquet"))
    assert run.code == 0, run.result
    assert run.result["metrics"]["accuracy"] > 0.6
