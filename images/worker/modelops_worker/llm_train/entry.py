"""`modelops-worker train` for a fine-tune: read the run configuration, start torchrun or train here.

The same steps and failure handling as the built-in recipe's (`modelops_worker.cli.train`): a
`WorkerError` ends the process with its exit code and reason in the result; any other error is a crash
(exit 1, retryable, the next attempt resumes from the newest checkpoint).
"""

from __future__ import annotations

import logging
import os

from pydantic import ValidationError

from modelops.api.finetuneconfig import FineTuneRunConfig, is_fine_tune
from modelops.api.runconfig import ENV_RUN_CONFIG
from modelops_worker.environment import WorkerEnv, result_path, write_result
from modelops_worker.errors import ConfigError, WorkerError, failed_result

log = logging.getLogger("modelops_worker.llm_train")


def wanted() -> bool:
    """Whether this pod's run configuration is a fine-tune's."""
    return is_fine_tune(os.environ.get(ENV_RUN_CONFIG, ""))


def load_config() -> FineTuneRunConfig:
    try:
        return FineTuneRunConfig.model_validate_json(os.environ.get(ENV_RUN_CONFIG, ""))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise ConfigError(f"{ENV_RUN_CONFIG} is not a valid fine-tune configuration: {problems}") from None


def train() -> int:
    out = result_path(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        cfg = load_config()
        env = WorkerEnv.from_environ()
        from modelops_worker import launch

        if launch.needs_torchrun(cfg):
            return launch.run_torchrun(cfg, env.termination_log)
        from modelops_worker.llm_train.finetune import run

        result = run(cfg, env)
    except WorkerError as exc:
        log.error("%s: %s", exc.reason, exc.message)
        if out is not None:
            write_result(out, failed_result(exc))
        return exc.exit_code
    except Exception as exc:
        log.exception("fine-tuning failed")
        if out is not None:
            write_result(out, failed_result(exc))
        return 1
    if out is not None:
        write_result(out, result)
    log.info("%s", result.message)
    return 0
