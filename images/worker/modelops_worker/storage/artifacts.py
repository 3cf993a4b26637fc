"""Fetching an artifact from object storage before it is verified, exactly like one on a claim.

`modelops-worker verify --artifact-uri s3://...` downloads the object (and the model card beside it,
when there is one) into the pod's own volume, the digest checked while streaming, and then runs the
same verification as for a file on a claim. The reasons the ModelVersion controller already knows are
kept: a missing object is `ArtifactNotFound`, other bytes than registered `ArtifactDigestMismatch`; the
store's own failures (access denied, no bucket, unreachable) keep their storage reasons.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from modelops.api.runconfig import EXIT_BAD_DATA
from modelops.api.serveconfig import REASON_ARTIFACT_DIGEST_MISMATCH, REASON_ARTIFACT_NOT_FOUND
from modelops_worker.errors import WorkerError
from modelops_worker.storage import DigestMismatch, ObjectNotFound, StorageError, open_location

MODEL_CARD = "model-card.json"  # modelops_worker.export.MODEL_CARD (not imported: export needs torch)


def fetch_artifact(
    uri: str,
    dest: Path,
    *,
    sha256: str | None,
    credentials_dir: Path | str | None = None,
    credentials_name: str | None = None,
) -> tuple[str, int]:
    """Download `uri` to `dest` (verified against `sha256` when given) and its model card beside it."""
    location = open_location(uri, credentials_dir, credentials_name=credentials_name)
    try:
        # Into the verification pod's own volume: nothing to make durable (Location.download).
        found = location.download(dest, sha256, durable=False)
    except ObjectNotFound as exc:
        raise WorkerError(REASON_ARTIFACT_NOT_FOUND, exc.message, EXIT_BAD_DATA) from None
    except DigestMismatch as exc:
        raise WorkerError(REASON_ARTIFACT_DIGEST_MISMATCH, exc.message, EXIT_BAD_DATA) from None
    parent, _, _ = location.parsed.key.rpartition("/")
    card_uri = (
        f"{location.parsed.scheme}://{location.parsed.bucket}/{parent + '/' if parent else ''}{MODEL_CARD}"
    )
    # A card is optional: without one the registry records what the spec says.
    with contextlib.suppress(StorageError):
        open_location(card_uri, credentials_dir).download(dest.with_name(MODEL_CARD))
    return found
