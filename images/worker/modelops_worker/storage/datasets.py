"""A training dataset from object storage: one file, or a prefix of shards, cached in the pod.

`spec.dataset.file.uri` names an object (`s3://bucket/data/train.csv`) or a prefix ending in `/`
(`s3://bucket/data/train/`, every shard of the format below it, in key order). Each object is
downloaded into the cache directory (`ENV_CACHE_DIR`: on the checkpoint claim for rank 0, so a pod the
operator starts again after a failure finds it; the pod's scratch volume otherwise) with its sha256
computed while streaming, and recorded beside it with the object's ETag and size. A cached copy is used
again only when the object still has that ETag and size and the local file still hashes to the
recorded digest; anything else is downloaded again.

Shards are merged into one file of the same format before loading, so a class name seen in two shards
is one class and the dataset digest recorded in lineage is computed over the whole, as for one file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from pathlib import Path

from modelops.api.storage import ENV_CACHE_DIR
from modelops_worker.errors import DatasetNotFoundError, DataValidationError
from modelops_worker.storage import Location, ObjectInfo, ObjectNotFound, open_location

log = logging.getLogger("modelops_worker.storage")

SUFFIXES = {"csv": (".csv",), "parquet": (".parquet", ".pq"), "npz": (".npz",)}
DEFAULT_CACHE_DIR = "/tmp/modelops-dataset-cache"
_RECORD = ".record.json"


def cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE_DIR) or DEFAULT_CACHE_DIR)


def _cache_name(uri: str) -> str:
    return hashlib.sha256(uri.encode()).hexdigest()[:32]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch_cached(location: Location, info: ObjectInfo, root: Path) -> tuple[Path, bool]:
    """The object's local copy under `root` and whether it was downloaded (False: the cache held it)."""
    uri = location.uri_of(info.key)
    name = _cache_name(uri)
    dest = root / name
    record_path = root / f"{name}{_RECORD}"
    try:
        record = json.loads(record_path.read_text())
        if (
            record.get("uri") == uri
            and record.get("etag") == info.etag
            and record.get("size") == info.size
            and dest.is_file()
            and _sha256(dest) == record.get("sha256")
        ):
            return dest, False
    except (OSError, ValueError):
        pass
    sha, size = location.download(dest, key=info.key, expected_size=info.size)
    tmp = record_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"uri": uri, "etag": info.etag, "size": size, "sha256": sha}))
    os.replace(tmp, record_path)
    return dest, True


def fetch(
    uri: str, fmt: str, *, credentials_dir: Path | str | None = None, root: Path | None = None
) -> tuple[Path, dict[str, int]]:
    """The dataset at `uri` as one local file of format `fmt`, and counts (objects, downloaded, cached)."""
    root = root or cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    location = open_location(uri, credentials_dir)
    if uri.endswith("/") or not location.parsed.key:
        infos = [o for o in location.list() if o.key.lower().endswith(SUFFIXES[fmt])]
        if not infos:
            raise DatasetNotFoundError(
                f"spec.dataset.file.uri {uri}: no {fmt} shards (keys ending in {', '.join(SUFFIXES[fmt])}) "
                "under this prefix; check the prefix and spec.dataset.file.format"
            )
        base = location
    else:
        try:
            info = location.head()
        except ObjectNotFound as exc:
            raise DatasetNotFoundError(f"spec.dataset.file.uri: {exc.message}") from None
        infos = [ObjectInfo("", info.size, info.etag, info.last_modified)]
        base = location
    paths: list[Path] = []
    downloaded = 0
    for info in infos:
        path, fresh = fetch_cached(base, info, root)
        paths.append(path)
        downloaded += int(fresh)
    counts = {"objects": len(infos), "downloaded": downloaded, "cached": len(infos) - downloaded}
    log.info(
        "dataset %s: %d object(s), %d downloaded, %d from the cache",
        uri,
        len(infos),
        downloaded,
        len(infos) - downloaded,
    )
    if len(paths) == 1:
        return paths[0], counts
    return merge(paths, fmt, root / f"{_cache_name(uri)}.merged.{fmt}", [o.key for o in infos]), counts


def merge(paths: list[Path], fmt: str, dest: Path, names: list[str]) -> Path:
    """Shards as one file of their format (headers / columns / arrays must agree)."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    if fmt == "csv":
        header: list[str] | None = None
        with tmp.open("w", newline="") as out:
            writer = csv.writer(out)
            for path, name in zip(paths, names, strict=True):
                with path.open(newline="") as fh:
                    reader = csv.reader(fh)
                    first = next(reader, None)
                    if first is None:
                        continue  # an empty shard adds nothing
                    if header is None:
                        header = first
                        writer.writerow(header)
                    elif [h.strip() for h in first] != [h.strip() for h in header]:
                        raise DataValidationError(
                            f"shard {name}: its header {first[:10]} differs from the first shard's {header[:10]}; "
                            "every shard needs the same columns"
                        )
                    writer.writerows(r for r in reader if r)
    elif fmt == "parquet":
        import pyarrow as pa  # type: ignore[import-not-found,import-untyped,unused-ignore]
        import pyarrow.parquet as pq  # type: ignore[import-not-found,import-untyped,unused-ignore]

        tables = []
        for path, name in zip(paths, names, strict=True):
            try:
                tables.append(pq.read_table(path))
            except Exception as exc:
                raise DataValidationError(f"shard {name}: not a readable parquet file ({exc})") from None
        try:
            pq.write_table(pa.concat_tables(tables, promote_options="default"), tmp)
        except Exception as exc:
            raise DataValidationError(f"the parquet shards do not share a schema: {exc}") from None
    else:
        import numpy as np

        xs, ys = [], []
        for path, name in zip(paths, names, strict=True):
            try:
                with np.load(path, allow_pickle=False) as npz:
                    xs.append(npz["X"])
                    ys.append(npz["y"])
            except (KeyError, ValueError, OSError) as exc:
                raise DataValidationError(
                    f"shard {name}: an npz shard needs arrays X and y ({exc})"
                ) from None
        if len({x.shape[1:] for x in xs}) > 1:
            raise DataValidationError(
                f"the npz shards' X have different feature shapes {sorted({x.shape[1:] for x in xs})}"
            )
        with tmp.open("wb") as fh:
            np.savez(fh, X=np.concatenate(xs), y=np.concatenate(ys))
    os.replace(tmp, dest)
    return dest
