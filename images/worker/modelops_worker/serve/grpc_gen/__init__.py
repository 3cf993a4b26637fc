"""Generated code: the OIP v2 gRPC messages and service of `grpc_predict_v2.proto`. Do not edit.

Everything here but the .proto and this file is written by `make grpc-stubs`
(scripts/gen_grpc_stubs.py, grpcio-tools); a test fails when it drifts from the .proto. The
hand-written server is `modelops_worker.serve.grpc_server`.
"""
