"""`modelops-worker`: the command of every pod the operator runs with the worker image.

`train` takes everything from the environment (see `modelops.api.runconfig`) and exits with the code
the operator reads: 0 done, 64 bad config, 65 bad data, anything else retryable. `verify` checks an
exported artifact. Both write their result as JSON to the termination message file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from pathlib import Path

from modelops.api.runconfig import REASON_TRAINING_ERROR, TrainResult
from modelops_worker.environment import (
    WorkerEnv,
    load_run_config,
    result_path,
    termination_log_path,
    write_result,
)
from modelops_worker.errors import WorkerError

log = logging.getLogger("modelops_worker")


def _setup_logging() -> None:
    rank = os.environ.get("RANK")
    who = f"rank {rank}" if rank is not None else "worker"
    logging.basicConfig(
        level=os.environ.get("MODELOPS_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s {who} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _failure(exc: WorkerError) -> TrainResult:
    return TrainResult(status="Failed", reason=exc.reason, message=exc.message, exit_code=exc.exit_code)


def train() -> int:
    """Run `train` in this process, or under torchrun when the run has more than one process."""
    from modelops_worker.llm_train import entry

    if entry.wanted():  # spec.fineTune: the causal-LM recipe (llm_train)
        return entry.train()
    out = result_path(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        cfg = load_run_config()
        env = WorkerEnv.from_environ()
        from modelops_worker import launch

        if launch.needs_torchrun(cfg):
            return launch.run_torchrun(cfg, env.termination_log)
        from modelops_worker.train import Trainer

        result = Trainer(cfg, env).run()
    except WorkerError as exc:
        log.error("%s: %s", exc.reason, exc.message)
        if out is not None:
            write_result(out, _failure(exc))
        return exc.exit_code
    except Exception as exc:
        log.exception("training failed")
        if out is not None:
            tb = traceback.extract_tb(exc.__traceback__)[-1:]
            where = f" at {Path(tb[0].filename).name}:{tb[0].lineno}" if tb else ""
            write_result(
                out,
                TrainResult(
                    status="Failed",
                    reason=REASON_TRAINING_ERROR,
                    message=f"{type(exc).__name__}: {exc}{where} (retryable; see the pod log)",
                    exit_code=1,
                ),
            )
        return 1
    if out is not None:
        write_result(out, result)
    log.info("%s", result.message)
    return 0


def verify(args: argparse.Namespace) -> int:
    from modelops_worker.verify import parse_signature
    from modelops_worker.verify import verify as run_verify

    try:
        declared = parse_signature(args.signature) if args.signature else None
        if args.artifact_uri:
            from modelops_worker.storage.artifacts import fetch_artifact

            fetch_artifact(
                args.artifact_uri,
                Path(args.artifact),
                sha256=args.sha256,
                credentials_dir=args.credentials_dir,
            )
        out = run_verify(Path(args.artifact), args.sha256, args.format, declared)
        code = 0
    except WorkerError as exc:
        out = {"status": "Failed", "reason": exc.reason, "message": exc.message, "exitCode": exc.exit_code}
        code = exc.exit_code
    write_result(termination_log_path(), out)
    print(json.dumps(out, separators=(",", ":")))
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelops-worker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train the model MODELOPS_RUN_CONFIG describes")
    v = sub.add_parser("verify", help="check an artifact's sha256, load it and run a smoke inference")
    v.add_argument("--artifact", required=True, help="path of the exported model file")
    v.add_argument("--sha256", help="expected sha256 (hex, optionally prefixed sha256:)")
    v.add_argument(
        "--artifact-uri",
        help="fetch the artifact from this object storage URI (s3://, gs://, az://, https://) to --artifact "
        "first, the digest checked while streaming (docs/storage.md)",
    )
    v.add_argument(
        "--credentials-dir",
        help="directory of the mounted credentials Secret (default: $MODELOPS_STORAGE_CREDENTIALS_DIR, "
        "else the pod's identity)",
    )
    v.add_argument(
        "--format",
        help="the artifact's format: torchscript, state_dict, onnx (default: detect); any other fails "
        "with NoRuntimeForFormat",
    )
    v.add_argument(
        "--signature",
        help="the declared signature as JSON (camelCase ModelSignature: inputs/outputs of name, datatype, "
        "shape), checked by a smoke inference of zeros",
    )
    from modelops_worker import backup as backup_cli

    backup_cli.add_parsers(sub)
    s = sub.add_parser(
        "serve", help="serve the model MODELOPS_SERVE_CONFIG describes (Open Inference Protocol v2)"
    )
    s.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    s.add_argument("--port", type=int, help="port to listen on (default: the configuration's, 8080)")
    args = parser.parse_args(argv)
    _setup_logging()
    if args.command == "train":
        return train()
    if args.command == "serve":
        from modelops_worker import serve

        return serve.main(args.host, args.port)
    if args.command in backup_cli.COMMANDS:
        return backup_cli.run(args)
    return verify(args)


if __name__ == "__main__":
    sys.exit(main())
