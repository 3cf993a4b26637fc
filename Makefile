# The few commands a newcomer needs. `make demo` and `make test` each set up everything themselves.
SHELL := /bin/bash
VENV := .venv/bin
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/.venv/bin:$(PATH)

.PHONY: demo test bootstrap lint typecheck unit crds grpc-stubs bench clean

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	$(VENV)/modelops demo

test: bootstrap lint typecheck
	$(VENV)/python -m pytest -q --durations=15

lint: bootstrap
	$(VENV)/ruff check operator localplane images/worker tests scripts bench
	$(VENV)/ruff format --check operator localplane images/worker tests scripts bench

typecheck: bootstrap
	$(VENV)/mypy

crds: bootstrap
	$(VENV)/python -m modelops.api.crdgen --write

# The OIP v2 gRPC modules, from images/worker/modelops_worker/serve/grpc_gen/grpc_predict_v2.proto.
grpc-stubs: bootstrap
	$(VENV)/python scripts/gen_grpc_stubs.py

# Benchmarks are not tests: they print numbers for docs/benchmarks.md (several minutes each).
bench: bootstrap
	$(VENV)/python bench/apiserver_bench.py
	$(VENV)/python bench/train_bench.py
	$(VENV)/python bench/trainingjob_bench.py
	$(VENV)/python bench/verify_bench.py
	$(VENV)/python bench/serve_bench.py
	$(VENV)/python bench/tuning_bench.py --plane
	$(VENV)/python bench/tuning_bench.py --plan
	$(VENV)/python bench/backup_bench.py
	$(VENV)/python bench/alerts_bench.py
	$(VENV)/python bench/console_bench.py

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache
