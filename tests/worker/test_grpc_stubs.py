"""The committed gRPC modules are what grpcio-tools makes of the committed .proto, and that .proto
still declares the service and messages KServe's and Triton's clients call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_committed_stubs_match_the_proto() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_grpc_stubs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"generated gRPC modules drifted from the .proto:\n{out.stderr}"


def test_the_service_is_the_one_kserve_and_triton_clients_call() -> None:
    from modelops_worker.serve.grpc_gen import grpc_predict_v2_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    methods = {m.name: (m.input_type.full_name, m.output_type.full_name) for m in service.methods}
    for rpc in ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"):
        assert methods[rpc] == (f"inference.{rpc}Request", f"inference.{rpc}Response")
    # Field numbers are the wire format: the ones both clients were generated with.
    infer = pb.ModelInferRequest.DESCRIPTOR
    assert {f.name: f.number for f in infer.fields} == {
        "model_name": 1,
        "model_version": 2,
        "id": 3,
        "parameters": 4,
        "inputs": 5,
        "outputs": 6,
        "raw_input_contents": 7,
    }
    contents = pb.InferTensorContents.DESCRIPTOR
    assert [f.name for f in sorted(contents.fields, key=lambda f: f.number)] == [
        "bool_contents",
        "int_contents",
        "int64_contents",
        "uint_contents",
        "uint64_contents",
        "fp32_contents",
        "fp64_contents",
        "bytes_contents",
    ]
    assert {f.name: f.number for f in pb.ModelInferResponse.DESCRIPTOR.fields}["raw_output_contents"] == 6
