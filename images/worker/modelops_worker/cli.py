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
from pathlib import Path

from modelops.api.llmconfig import ENV_LLM_SERVE_CONFIG, FORMAT_ADAPTER, LLM_FORMATS
from modelops_worker import faults
from modelops_worker.environment import (
    WorkerEnv,
    load_run_config,
    result_path,
    termination_log_path,
    write_result,
)
from modelops_worker.errors import WorkerError, failed_result

log = logging.getLogger("modelops_worker")


def _setup_logging() -> None:
    rank = os.environ.get("RANK")
    who = f"rank {rank}" if rank is not None else "worker"
    logging.basicConfig(
        level=os.environ.get("MODELOPS_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s {who} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


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
            write_result(out, failed_result(exc))
        return exc.exit_code
    except Exception as exc:
        log.exception("training failed")
        if out is not None:
            write_result(out, failed_result(exc))
        return 1
    if out is not None:
        write_result(out, result)
    log.info("%s", result.message)
    return 0


def verify(args: argparse.Namespace) -> int:
    from modelops_worker.verify import parse_signature
    from modelops_worker.verify import verify as run_verify

    try:
        if args.artifact_uri:
            from modelops_worker.storage.artifacts import fetch_artifact

            fetch_artifact(
                args.artifact_uri,
                Path(args.artifact),
                sha256=args.sha256,
                credentials_dir=args.credentials_dir,
            )
        if args.format in LLM_FORMATS or args.format == FORMAT_ADAPTER:
            from modelops_worker.llm.verify import verify as verify_llm

            base = Path(args.base_artifact) if args.base_artifact else None
            out = verify_llm(
                Path(args.artifact), args.sha256, args.format, base, args.base_sha256, args.base_format
            )
        else:
            declared = parse_signature(args.signature) if args.signature else None
            out = run_verify(Path(args.artifact), args.sha256, args.format, declared)
        if args.publish:
            from modelops_worker import modelstore

            out["store"] = modelstore.publish(
                Path(args.artifact), out["artifact"]["sha256"], args.publish, args.publish_credentials_dir
            )
        code = 0
    except WorkerError as exc:
        out = {"status": "Failed", "reason": exc.reason, "message": exc.message, "exitCode": exc.exit_code}
        code = exc.exit_code
    write_result(termination_log_path(), out)
    print(json.dumps(out, separators=(",", ":")))
    return code


def fetch(args: argparse.Namespace) -> int:
    from modelops_worker import modelstore

    try:
        out = modelstore.fetch(args.store, args.sha256, Path(args.to), args.credentials_dir)
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
    v.add_argument("--artifact", required=True, help="path of the exported model file (or model directory)")
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
        help="the artifact's format: torchscript, state_dict, onnx (default: detect), or an LLM's: gguf, "
        "huggingface (a model directory), lora (an adapter, with --base-artifact); any other fails with "
        "NoRuntimeForFormat",
    )
    v.add_argument(
        "--base-artifact", help="lora: the base model the adapter applies to (GGUF file or directory)"
    )
    v.add_argument("--base-sha256", help="lora: the base model's digest")
    v.add_argument(
        "--base-format", choices=LLM_FORMATS, help="lora: the base model's format (default: detect)"
    )
    v.add_argument(
        "--signature",
        help="the declared signature as JSON (camelCase ModelSignature: inputs/outputs of name, datatype, "
        "shape), checked by a smoke inference of zeros",
    )
    v.add_argument(
        "--publish",
        help="after verifying, put the artifact into the model store (a directory, or an object storage "
        "prefix such as s3://bucket/models) under its digest",
    )
    v.add_argument(
        "--publish-credentials-dir",
        help="the model store's credentials (the mounted Secret's directory); default: the pod's identity",
    )
    f = sub.add_parser("fetch", help="copy an artifact from the model store by digest, verifying its sha256")
    f.add_argument("--store", required=True, help="the model store: a directory, or s3://bucket/prefix")
    f.add_argument(
        "--credentials-dir",
        help="the store's credentials (the mounted Secret's directory); default: the pod's identity",
    )
    f.add_argument("--sha256", required=True, help="the artifact's digest (hex, optionally sha256:)")
    f.add_argument(
        "--to",
        required=True,
        help="the file (for a directory artifact, the directory) to create, only when the digest matches",
    )
    from modelops_worker import backup as backup_cli

    backup_cli.add_parsers(sub)
    s = sub.add_parser(
        "serve", help="serve the model MODELOPS_SERVE_CONFIG describes (Open Inference Protocol v2)"
    )
    s.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    s.add_argument("--port", type=int, help="port to listen on (default: the configuration's, 8080)")
    sl = sub.add_parser(
        "serve-llm", help="serve the language model MODELOPS_LLM_SERVE_CONFIG describes (OpenAI's API)"
    )
    sl.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    sl.add_argument("--port", type=int, help="port to listen on (default: the configuration's, 8080)")
    args = parser.parse_args(argv)
    _setup_logging()
    faults.install()  # off unless a fault is asked for in the environment (modelops_worker.faults)
    if args.command == "train":
        return train()
    if args.command == "serve-llm" or (args.command == "serve" and os.environ.get(ENV_LLM_SERVE_CONFIG)):
        from modelops_worker import llm

        return llm.main(args.host, args.port)
    if args.command == "serve":
        from modelops_worker import serve

        return serve.main(args.host, args.port)
    if args.command == "fetch":
        return fetch(args)
    if args.command in backup_cli.COMMANDS:
        return backup_cli.run(args)
    return verify(args)


if __name__ == "__main__":
    sys.exit(main())
