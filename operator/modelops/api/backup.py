"""Backup policy and status, shared by TrainingJob (its checkpoint claim) and ModelVersion (its artifact).

Owned by the backups controller (`controllers/backup_handlers.py`); the kinds only embed these models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from modelops.api.common import ApiModel, Timestamp

BackupMethod = Literal["copy", "volumeSnapshot"]


def _copy_only() -> list[BackupMethod]:
    return ["copy"]


class BackupPolicy(ApiModel):
    """Scheduled backups of the data this object must not lose."""

    schedule: str = Field(
        min_length=1, max_length=128, description="Cron schedule (5 fields, e.g. '0 */6 * * *')."
    )
    methods: list[BackupMethod] = Field(
        default_factory=_copy_only,
        min_length=1,
        description="copy: a CronJob copies the files with a sha256 manifest; volumeSnapshot: a CSI "
        "VolumeSnapshot of the claim.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


class BackupStatus(ApiModel):
    """The state of the backups."""

    last_success_time: Timestamp | None = Field(default=None, description="When the last backup succeeded.")
    next_run_time: Timestamp | None = Field(default=None, description="When the next one is due.")
    kept: int = Field(default=0, description="Backups currently kept.")
