# The few commands a newcomer needs. `make demo` and `make test` each set up everything themselves.
SHELL := /bin/bash
VENV := .venv/bin
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/.venv/bin:$(PATH)

.PHONY: demo test bootstrap lint typecheck unit crds grpc-stubs bench clean images

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	$(VENV)/modelops demo

test: bootstrap lint typecheck images
	$(VENV)/python -m pytest -q --durations=15

# The operator and worker images, built with podman from the real Dockerfiles on a Debian base made by
# mmdebstrap (docs/images.md); cached under .cache/ by content, so a second run takes seconds. Fails,
# never skips, without podman.
images: bootstrap
	$(VENV)/python scripts/build_images.py --json .cache/images/build.json

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
