"""Loading, checking and splitting the training data.

Every dataset, built-in or file, becomes the same canonical pair of arrays (float32 features, int64
labels) before anything else happens, so the validation, the digest recorded in the model card and
the split are identical whatever the source. Validation runs before the first step: a bad dataset must
fail the job permanently with numbers a user can act on, not crash it forty minutes in.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from modelops.api.runconfig import DEFAULT_DATA_DIR, ENV_DATA_DIR
from modelops.api.trainingjob import DatasetSpec, DataValidation
from modelops_worker.errors import ConfigError, DatasetNotFoundError, DataValidationError

# Labels above this are almost certainly a regression target or an id column, not a class.
MAX_CLASSES = 10000

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass
class Dataset:
    """Canonical arrays plus what a user needs to read the result (column and class names)."""

    x: FloatArray
    y: IntArray
    feature_names: list[str]
    class_names: list[str]
    source: str
    image_shape: tuple[int, int] | None = None
    digest: str = field(default="")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load(spec: DatasetSpec, data_dir: str | None = None) -> Dataset:
    """Load the dataset the spec names into canonical arrays (no validation yet, except parsing)."""
    if spec.builtin is not None:
        ds = _load_builtin(spec.builtin)
    elif spec.file is not None and spec.file.uri is not None:
        # Object storage (or a pvc:// URI): fetched into the pod's cache first (docs/storage.md).
        from modelops_worker.storage import datasets as remote

        path, _ = remote.fetch(spec.file.uri, spec.file.format)
        ds = _load_file(path, spec.file.format, spec.file.label_column)
        ds.source = spec.file.uri
    elif spec.file is not None and spec.file.path is not None:
        root = Path(data_dir or os.environ.get(ENV_DATA_DIR, DEFAULT_DATA_DIR))
        rel = Path(spec.file.path)
        if rel.is_absolute() or ".." in rel.parts:
            raise ConfigError(
                f"dataset.file.path {spec.file.path!r} must be relative to the claim and stay inside it"
            )
        path = root / rel
        if not path.is_file():
            raise DatasetNotFoundError(
                f"dataset.file.path {spec.file.path!r} not found on claim {spec.file.claim_name!r} "
                f"(looked at {path}); check the path and that the file was copied to the claim"
            )
        ds = _load_file(path, spec.file.format, spec.file.label_column)
    else:
        raise ConfigError("dataset: set exactly one of dataset.builtin or dataset.file")
    ds.digest = digest(ds.x, ds.y)
    return ds


def _load_file(path: Path, fmt: str, label_column: str) -> Dataset:
    if fmt == "csv":
        return _load_csv(path, label_column)
    if fmt == "npz":
        return _load_npz(path)
    return _load_parquet(path, label_column)


def _load_builtin(name: str) -> Dataset:
    from sklearn import datasets as skd

    loaders = {
        "digits": skd.load_digits,
        "wine": skd.load_wine,
        "breast_cancer": skd.load_breast_cancer,
        "iris": skd.load_iris,
    }
    if name not in loaders:
        raise ConfigError(f"dataset.builtin {name!r} is unknown; use one of {sorted(loaders)}")
    bunch = loaders[name]()
    x = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    features = [str(f) for f in getattr(bunch, "feature_names", [f"f{i}" for i in range(x.shape[1])])]
    classes = [str(c) for c in bunch.target_names]
    return Dataset(
        x=x,
        y=y,
        feature_names=features,
        class_names=classes,
        source=f"builtin:{name}",
        image_shape=(8, 8) if name == "digits" else None,
    )


def _labels_from_column(values: list[str], column: str) -> tuple[IntArray, list[str]]:
    """Integral numbers stay class indices; anything else is a class name, indexed in sorted order."""
    try:
        nums = np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        if any(v.strip() == "" for v in values):
            empty = sum(1 for v in values if v.strip() == "")
            raise DataValidationError(
                f"label column {column!r} has {empty} empty value(s); every row needs a label"
            ) from None
        names = sorted(set(values))
        index = {n: i for i, n in enumerate(names)}
        return np.array([index[v] for v in values], dtype=np.int64), names
    return _integral_labels(nums, column)


def _integral_labels(nums: npt.NDArray[np.float64], column: str) -> tuple[IntArray, list[str]]:
    bad = ~np.isfinite(nums)
    if bad.any():
        raise DataValidationError(
            f"label column {column!r} has {int(bad.sum())} NaN/inf value(s) of {nums.size} rows; "
            "drop or fix those rows"
        )
    frac = nums != np.round(nums)
    if frac.any():
        raise DataValidationError(
            f"label column {column!r} has {int(frac.sum())} non-integral value(s) (e.g. {nums[frac][0]}); "
            "classification labels must be integers or class names"
        )
    if nums.size and (nums.min() < 0 or nums.max() >= MAX_CLASSES):
        raise DataValidationError(
            f"label column {column!r} has values outside 0..{MAX_CLASSES - 1} "
            f"(min {nums.min():g}, max {nums.max():g}); labels are class indices starting at 0"
        )
    y = nums.astype(np.int64)
    k = int(y.max()) + 1 if y.size else 0
    return y, [str(i) for i in range(k)]


def _load_csv(path: Path, label_column: str) -> Dataset:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise DataValidationError(f"{path.name}: the CSV file is empty (no header row)") from None
        rows = [r for r in reader if r]
    header = [h.strip() for h in header]
    if label_column not in header:
        raise DataValidationError(
            f"{path.name}: label column {label_column!r} not in the header {header[:20]}; "
            "set dataset.file.labelColumn"
        )
    li = header.index(label_column)
    width = len(header)
    for n, r in enumerate(rows, start=2):
        if len(r) != width:
            raise DataValidationError(f"{path.name}: line {n} has {len(r)} fields, the header has {width}")
    features = [h for i, h in enumerate(header) if i != li]
    x = np.empty((len(rows), width - 1), dtype=np.float32)
    for j, col in enumerate(i for i in range(width) if i != li):
        cells = [r[col] for r in rows]
        try:
            x[:, j] = [float(c) if c.strip() else math.nan for c in cells]
        except ValueError:
            bad = next(c for c in cells if not _is_float(c))
            raise DataValidationError(
                f"{path.name}: feature column {header[col]!r} has a non-numeric value {bad!r}; "
                "features must be numbers (encode categories first)"
            ) from None
    y, classes = _labels_from_column([r[li] for r in rows], label_column)
    return Dataset(x=x, y=y, feature_names=features, class_names=classes, source=f"file:{path.name}")


def _is_float(c: str) -> bool:
    try:
        float(c)
    except ValueError:
        return not c.strip()
    return True


def _load_npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "X" not in npz or "y" not in npz:
                raise DataValidationError(
                    f"{path.name}: an npz dataset needs arrays named X and y, found {sorted(npz.files)}"
                )
            x_raw, y_raw = npz["X"], npz["y"]
    except (ValueError, OSError) as exc:
        raise DataValidationError(f"{path.name}: not a readable npz file ({exc})") from None
    if x_raw.ndim < 2 or y_raw.ndim != 1 or x_raw.shape[0] != y_raw.shape[0]:
        raise DataValidationError(
            f"{path.name}: X must be (rows, features...) and y (rows,); got X{x_raw.shape} y{y_raw.shape}"
        )
    image_shape = (int(x_raw.shape[1]), int(x_raw.shape[2])) if x_raw.ndim == 3 else None
    x = np.ascontiguousarray(x_raw.reshape(x_raw.shape[0], -1), dtype=np.float32)
    if y_raw.dtype.kind in "US":
        y, classes = _labels_from_column([str(v) for v in y_raw], "y")
    else:
        y, classes = _integral_labels(y_raw.astype(np.float64), "y")
    features = [f"x{i}" for i in range(x.shape[1])]
    return Dataset(
        x=x,
        y=y,
        feature_names=features,
        class_names=classes,
        source=f"file:{path.name}",
        image_shape=image_shape,
    )


def _load_parquet(path: Path, label_column: str) -> Dataset:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        raise ConfigError(
            "dataset.file.format parquet needs pyarrow in the worker image; convert the file to csv or "
            "npz, or use an image with pyarrow installed"
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise DataValidationError(f"{path.name}: not a readable parquet file ({exc})") from None
    names = [str(n) for n in table.column_names]
    if label_column not in names:
        raise DataValidationError(
            f"{path.name}: label column {label_column!r} not in the columns {names[:20]}; "
            "set dataset.file.labelColumn"
        )
    features = [n for n in names if n != label_column]
    cols = []
    for n in features:
        try:
            cols.append(np.asarray(table.column(n).to_numpy(zero_copy_only=False), dtype=np.float32))
        except (ValueError, TypeError):
            raise DataValidationError(
                f"{path.name}: feature column {n!r} is not numeric; encode categories first"
            ) from None
    x = np.stack(cols, axis=1) if cols else np.empty((table.num_rows, 0), dtype=np.float32)
    raw = table.column(label_column).to_pylist()
    y, classes = _labels_from_column(["" if v is None else str(v) for v in raw], label_column)
    return Dataset(x=x, y=y, feature_names=features, class_names=classes, source=f"file:{path.name}")


def digest(x: FloatArray, y: IntArray) -> str:
    """sha256 of the canonical arrays (shape, little-endian float32 features, int64 labels)."""
    h = hashlib.sha256()
    h.update(f"x{tuple(x.shape)}y{tuple(y.shape)}".encode())
    h.update(np.ascontiguousarray(x, dtype="<f4").tobytes())
    h.update(np.ascontiguousarray(y, dtype="<i8").tobytes())
    return h.hexdigest()


def validate(ds: Dataset, rules: DataValidation) -> None:
    """Refuse data the model cannot learn from, naming the column and the numbers.

    NaN/inf and the label checks always run (training on them fails or silently learns nothing); the
    statistical checks (rows, duplicates, imbalance) run when `rules.enabled`.
    """
    n = ds.x.shape[0]
    if ds.x.ndim != 2 or ds.x.shape[1] == 0:
        raise DataValidationError(f"{ds.source}: no feature columns")
    bad = ~np.isfinite(ds.x)
    if bad.any():
        per_col = bad.sum(axis=0)
        cols = [(ds.feature_names[j], int(c)) for j, c in enumerate(per_col) if c]
        shown = ", ".join(f"{name!r}: {c}" for name, c in cols[:5])
        more = f" and {len(cols) - 5} more column(s)" if len(cols) > 5 else ""
        raise DataValidationError(
            f"{ds.source}: {int(bad.sum())} NaN/inf value(s) in {len(cols)} feature column(s) "
            f"({shown}{more}) of {n} rows; drop or impute them before training"
        )
    if ds.num_classes < 2:
        raise DataValidationError(
            f"{ds.source}: the labels hold {ds.num_classes} class(es); classification needs at least 2"
        )
    if not rules.enabled:
        return
    if n < rules.min_rows:
        raise DataValidationError(
            f"{ds.source}: {n} rows, fewer than dataValidation.minRows={rules.min_rows}; add data or lower it"
        )
    rows = np.concatenate([ds.x.view(np.int32), ds.y.reshape(-1, 1).astype(np.int32)], axis=1)
    unique = np.unique(rows, axis=0).shape[0]
    dup_ratio = (n - unique) / n if n else 0.0
    if dup_ratio > rules.max_duplicate_ratio:
        raise DataValidationError(
            f"{ds.source}: {n - unique} of {n} rows are duplicates (ratio {dup_ratio:.3f} > "
            f"dataValidation.maxDuplicateRatio={rules.max_duplicate_ratio}); deduplicate the data or raise it"
        )
    counts = np.bincount(ds.y, minlength=ds.num_classes)
    smallest = int(counts.min())
    if smallest == 0:
        empty = [ds.class_names[i] for i, c in enumerate(counts) if c == 0]
        raise DataValidationError(
            f"{ds.source}: class(es) {empty[:10]} have no rows (labels run 0..{ds.num_classes - 1}); "
            "renumber the labels so every class in that range occurs"
        )
    ratio = float(counts.max()) / smallest
    if ratio > rules.max_class_imbalance:
        raise DataValidationError(
            f"{ds.source}: class imbalance {ratio:.1f} (largest class {int(counts.max())} rows, smallest "
            f"{smallest}) > dataValidation.maxClassImbalance={rules.max_class_imbalance}; rebalance or raise it"
        )


@dataclass
class Split:
    """Train/validation arrays and the feature statistics the model normalises with."""

    x_train: FloatArray
    y_train: IntArray
    x_val: FloatArray
    y_val: IntArray
    mean: FloatArray
    std: FloatArray


def split(ds: Dataset, validation_split: float, seed: int) -> Split:
    """A seeded, stratified split; every process of a run computes the same one."""
    rng = np.random.default_rng(seed)
    val_idx: list[int] = []
    for c in range(ds.num_classes):
        idx = np.flatnonzero(ds.y == c)
        rng.shuffle(idx)
        k = round(len(idx) * validation_split)
        if len(idx) > 1:
            k = min(max(k, 1), len(idx) - 1)
        val_idx.extend(idx[:k].tolist())
    mask = np.zeros(ds.x.shape[0], dtype=bool)
    mask[val_idx] = True
    if mask.all() or not mask.any():
        raise DataValidationError(
            f"{ds.source}: {ds.x.shape[0]} rows cannot be split into train and validation sets "
            f"(hyperparameters.validationSplit={validation_split}); add data"
        )
    x_train, y_train = ds.x[~mask], ds.y[~mask]
    mean = x_train.mean(axis=0).astype(np.float32)
    std = x_train.std(axis=0).astype(np.float32)
    # A constant column would divide by zero; leaving it unscaled is harmless.
    std[std < 1e-6] = 1.0
    return Split(x_train, y_train, ds.x[mask], ds.y[mask], mean, std)
