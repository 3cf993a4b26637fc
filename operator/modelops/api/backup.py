"""Backup policy, backup status and restore sources, shared by TrainingJob and ModelVersion.

A TrainingJob backs up its checkpoint claim, a ModelVersion its artifact. Two methods: `copy` (a
CronJob runs `modelops-worker backup`, which copies the files into a new timestamped directory of a
destination claim and writes a sha256 manifest last) and `volumeSnapshot` (the operator creates CSI
VolumeSnapshots of the claim on the schedule). Both are pruned by count and by age. Owned by the backup
controller (`controllers/backup.py`); the kinds only embed these models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from modelops import cron
from modelops.api import storage
from modelops.api.common import (
    DNS_SUBDOMAIN_PATTERN,
    RELATIVE_PATH_PATTERN,
    ApiModel,
    DnsLabel,
    PositiveQuantity,
    SecretReference,
    Timestamp,
    inside_claim,
    rules,
)

BackupMethod = Literal["copy", "volumeSnapshot"]

DURATION_PATTERN = r"^([0-9]+[smhd])+$"
# A duration with a non-zero amount somewhere: a maxAge of 0 would make every backup too old at once.
POSITIVE_DURATION_PATTERN = r"^([0-9]+[smhd])*[0-9]*[1-9][0-9]*[smhd]([0-9]+[smhd])*$"
__all__ = ["RELATIVE_PATH_PATTERN"]  # re-exported: it used to be defined here


def _copy_only() -> list[BackupMethod]:
    return ["copy"]


class BackupDestination(ApiModel):
    """Where copy backups go: a directory of a PersistentVolumeClaim in the same namespace, or an object
    storage prefix (`uri`)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "has(self.claimName) != has(self.uri)",
                "spec.backup.destination: set exactly one of claimName or uri",
            ),
            (
                "!has(self.uri) || (!has(self.path) && !has(self.size))",
                "spec.backup.destination: path and size apply only with claimName; put the prefix in the uri "
                "(e.g. s3://backups/models/digits/)",
            ),
            storage.credentials_rule("spec.backup.destination", "spec.backup.destination.uri"),
        )
    )

    claim_name: DnsLabel | None = Field(
        default=None,
        description="The PersistentVolumeClaim backups are written to (not the claim being backed up).",
    )
    uri: str | None = Field(
        default=None,
        max_length=2048,
        pattern=storage.PREFIX_URI_PATTERN,
        json_schema_extra=storage.uri_rules("spec.backup.destination.uri", "s3://backups/models/digits/"),
        description="An object storage prefix instead of a claim (s3://bucket/prefix/, gs://, az://): each "
        "backup is <prefix>/<timestamp>/ with its manifest.json written last. A bare bucket gets the "
        "prefix modelops-backups/<kind>/<name>/ (docs/storage.md).",
    )
    credentials_secret: SecretReference | None = Field(
        default=None, description=storage.CREDENTIALS_SECRET_DESCRIPTION
    )
    path: str | None = Field(
        default=None,
        max_length=1024,
        pattern=RELATIVE_PATH_PATTERN,
        json_schema_extra=inside_claim("spec.backup.destination.path"),
        description="Directory inside the claim, relative; defaults to modelops-backups/<kind>/<name>. "
        "Each backup is a timestamped subdirectory with a manifest.json.",
    )
    size: PositiveQuantity | None = Field(
        default=None,
        description="When set, the operator creates the claim with this size if it does not exist (and "
        "never deletes it: backups outlive the object). Without it the claim must exist.",
    )


class BackupRetention(ApiModel):
    """Which backups are kept. The newest complete backup is never deleted, whatever its age."""

    keep_last: int = Field(default=7, ge=1, le=1000, description="Keep at most this many backups.")
    max_age: str | None = Field(
        default=None,
        max_length=32,
        pattern=POSITIVE_DURATION_PATTERN,
        description="Delete backups older than this (e.g. 36h, 7d, 1h30m); empty keeps them by count only.",
    )


class BackupPolicy(ApiModel):
    """Scheduled backups of the data this object must not lose."""

    # `methods` has no schema default (only the model's), so the rules read an absent list as [copy].
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "(has(self.methods) && !('copy' in self.methods)) || has(self.destination)",
                "spec.backup.destination is required with method copy: name the claim (or object storage uri) "
                "backups go to",
            ),
            (
                "!has(self.volumeSnapshotClassName) || (has(self.methods) && 'volumeSnapshot' in self.methods)",
                "spec.backup.volumeSnapshotClassName applies only with method volumeSnapshot",
            ),
            (
                "!has(self.destination) || !has(self.methods) || 'copy' in self.methods",
                "spec.backup.destination applies only with method copy: add copy to spec.backup.methods "
                "or drop the destination",
            ),
        )
    )

    schedule: str = Field(
        min_length=1,
        max_length=128,
        description="Cron schedule in UTC, as a CronJob reads it: five fields (minute hour day-of-month "
        "month day-of-week, e.g. '0 */6 * * *'), or @hourly/@daily/@weekly/@monthly/@yearly, or "
        "'@every 6h'. Day-of-week is 0-6 (SUN-SAT); no TZ= prefix.",
        json_schema_extra=rules((cron.SCHEDULE_RULE, f"spec.backup.schedule: {cron.SCHEDULE_MESSAGE}")),
    )
    methods: list[BackupMethod] = Field(
        default_factory=_copy_only,
        min_length=1,
        max_length=2,
        description="copy: a CronJob copies the files with a sha256 manifest to spec.backup.destination; "
        "volumeSnapshot: a CSI VolumeSnapshot (snapshot.storage.k8s.io/v1) of the claim.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    destination: BackupDestination | None = Field(
        default=None, description="Where copy backups are written (required with method copy)."
    )
    volume_snapshot_class_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="VolumeSnapshotClass of the snapshots; empty uses the cluster's default class.",
    )
    retention: BackupRetention = Field(
        default_factory=BackupRetention, description="How many backups to keep, and for how long."
    )
    suspend: bool = Field(default=False, description="Stop taking new backups; the kept ones stay.")


class BackupFailure(ApiModel):
    """The last backup that failed."""

    time: Timestamp | None = Field(default=None, description="When it failed.")
    reason: str | None = Field(default=None, description="CamelCase reason, e.g. BackupCopyFailed.")
    message: str | None = Field(default=None, description="What went wrong and what to do.")


class BackupRecord(ApiModel):
    """One kept backup."""

    method: BackupMethod = Field(description="copy or volumeSnapshot.")
    name: str = Field(
        description="copy: the backup directory (a timestamp); volumeSnapshot: the VolumeSnapshot's name."
    )
    time: Timestamp | None = Field(default=None, description="When it was taken.")
    claim_name: str | None = Field(default=None, description="copy: the claim holding it.")
    path: str | None = Field(default=None, description="copy: its directory inside that claim.")
    uri: str | None = Field(
        default=None, description="copy to object storage: its prefix (restoreFrom.backup.uri takes it)."
    )
    manifest_sha256: str | None = Field(
        default=None, description="copy: sha256 of its manifest.json (which lists every file's sha256)."
    )
    files: int | None = Field(default=None, description="copy: files in it.")
    size_bytes: int | None = Field(default=None, description="copy: bytes in it.")
    ready_to_use: bool | None = Field(default=None, description="volumeSnapshot: the snapshot is usable.")


class RestoreStatus(ApiModel):
    """The outcome of the restore asked for in the spec."""

    phase: Literal["Pending", "Running", "Succeeded", "Failed"] | None = Field(
        default=None, description="Where the restore is."
    )
    source: str | None = Field(default=None, description="What is restored (backup path or snapshot).")
    claim_name: str | None = Field(default=None, description="The claim the data was restored into.")
    sha256: str | None = Field(default=None, description="The verified sha256 of the restored data.")
    message: str | None = Field(default=None, description="Details, or why it failed.")
    completion_time: Timestamp | None = Field(default=None, description="When it finished.")


class BackupStatus(ApiModel):
    """The state of the backups."""

    last_success_time: Timestamp | None = Field(default=None, description="When the last backup succeeded.")
    last_schedule_time: Timestamp | None = Field(
        default=None, description="The last scheduled time a backup was started for."
    )
    next_run_time: Timestamp | None = Field(default=None, description="When the next one is due.")
    kept: int = Field(default=0, description="Backups currently kept (complete ones only).")
    last_failure: BackupFailure | None = Field(default=None, description="The last backup that failed.")
    backups: list[BackupRecord] = Field(default_factory=list, description="The kept backups, oldest first.")
    restore: RestoreStatus | None = Field(default=None, description="The restore asked for in the spec.")


class BackupReference(ApiModel):
    """One copy backup: a directory with a manifest.json on a claim in the same namespace, or in object
    storage (`uri`)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "has(self.uri) != (has(self.claimName) || has(self.path))",
                "restoreFrom.backup: set either uri, or claimName and path (not both)",
            ),
            (
                "has(self.uri) || (has(self.claimName) && has(self.path))",
                "restoreFrom.backup: claimName and path go together (status.backup.backups[] lists both)",
            ),
            storage.credentials_rule("restoreFrom.backup", "restoreFrom.backup.uri"),
        )
    )

    claim_name: DnsLabel | None = Field(
        default=None, description="The claim holding the backup (the policy's destination)."
    )
    uri: str | None = Field(
        default=None,
        max_length=2048,
        pattern=storage.PREFIX_URI_PATTERN,
        json_schema_extra=storage.uri_rules("restoreFrom.backup.uri", "s3://backups/models/20261207T120000Z"),
        description="A backup in object storage, as listed in status.backup.backups[].uri.",
    )
    credentials_secret: SecretReference | None = Field(
        default=None, description=storage.CREDENTIALS_SECRET_DESCRIPTION
    )
    path: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        pattern=RELATIVE_PATH_PATTERN,
        json_schema_extra=inside_claim("restoreFrom.backup.path"),
        description="The backup directory inside the claim, as listed in status.backup.backups[].path.",
    )


class VolumeSnapshotReference(ApiModel):
    """A VolumeSnapshot in the same namespace."""

    name: DnsLabel = Field(description="Name of the VolumeSnapshot (status.backup.backups[].name).")


class RestoreSource(ApiModel):
    """Where to restore from: a copy backup or a VolumeSnapshot. The data's sha256 is verified first."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "has(self.backup) != has(self.volumeSnapshot)",
                "restoreFrom: set exactly one of restoreFrom.backup or restoreFrom.volumeSnapshot",
            )
        )
    )

    backup: BackupReference | None = Field(default=None, description="A copy backup.")
    volume_snapshot: VolumeSnapshotReference | None = Field(default=None, description="A VolumeSnapshot.")
