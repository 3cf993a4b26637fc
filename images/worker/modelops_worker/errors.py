"""Failures the worker reports with a reason and an exit code the operator acts on.

Raising a `WorkerError` anywhere ends the process with its exit code and writes its reason and message
into the termination message; any other exception is a crash (exit 1, retryable).
"""

from __future__ import annotations

import traceback
from pathlib import Path

from modelops.api.runconfig import (
    EXIT_BAD_CONFIG,
    EXIT_BAD_DATA,
    EXIT_SIGTERM,
    REASON_DATA_VALIDATION_FAILED,
    REASON_DATASET_NOT_FOUND,
    REASON_INVALID_CONFIG,
    REASON_TERMINATED,
    REASON_TRAINING_ERROR,
    TrainResult,
)


class WorkerError(Exception):
    """A failure with a CamelCase reason and the exit code that tells the operator whether to retry."""

    def __init__(self, reason: str, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.exit_code = exit_code


class ConfigError(WorkerError):
    """The run configuration or environment is wrong: permanent (exit 64)."""

    def __init__(self, message: str) -> None:
        super().__init__(REASON_INVALID_CONFIG, message, EXIT_BAD_CONFIG)


class DataValidationError(WorkerError):
    """The data fails a check: permanent (exit 65)."""

    def __init__(self, message: str) -> None:
        super().__init__(REASON_DATA_VALIDATION_FAILED, message, EXIT_BAD_DATA)


class DatasetNotFoundError(WorkerError):
    """The dataset file is not where the spec says: permanent (exit 65)."""

    def __init__(self, message: str) -> None:
        super().__init__(REASON_DATASET_NOT_FOUND, message, EXIT_BAD_DATA)


class Terminated(WorkerError):
    """SIGTERM arrived (eviction, preemption, deletion): retryable (exit 143)."""

    def __init__(self, step: int) -> None:
        super().__init__(
            REASON_TERMINATED, f"stopped by SIGTERM at step {step}; the next attempt resumes", EXIT_SIGTERM
        )


def failed_result(exc: BaseException) -> TrainResult:
    """The termination message of a training run that ended with `exc`: a WorkerError's own reason and
    exit code (permanent or not, as it says), anything else a retryable TrainingError naming where."""
    if isinstance(exc, WorkerError):
        return TrainResult(status="Failed", reason=exc.reason, message=exc.message, exit_code=exc.exit_code)
    tb = traceback.extract_tb(exc.__traceback__)[-1:]
    where = f" at {Path(tb[0].filename).name}:{tb[0].lineno}" if tb else ""
    return TrainResult(
        status="Failed",
        reason=REASON_TRAINING_ERROR,
        message=f"{type(exc).__name__}: {exc}{where} (retryable; see the pod log)",
        exit_code=1,
    )
