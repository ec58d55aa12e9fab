# ml-service: one venv at .venv, the real models in ./models (MODEL_CACHE_DIR).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL_CACHE_DIR ?= $(CURDIR)/models
export MODEL_CACHE_DIR
SRC := ml-service

.PHONY: venv models run test lint unit integration e2e clean browser redis postgres fuzz compose-cli test-docker wheelhouse \
	base-image image image-gpu image-backend image-with-models

venv: $(STAMP)

$(STAMP): $(SRC)/pyproject.toml $(SRC)/constraints.txt backend/pyproject.toml testing/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c $(SRC)/constraints.txt -e '$(SRC)[dev,build]' -e 'backend[dev,postgres]' -e testing
	touch $(STAMP)

# Builds only what is missing or out of date (the build writes a stamp per model).
models: $(STAMP)
	$(BIN)/ml-service models build --model-dir $(MODEL_CACHE_DIR)

# ml-service on :8001 and the app's backend on :8000; Ctrl-C stops both (deploy/run_local.py)
HOST ?= 127.0.0.1
PORT ?= 8001
BACKEND_PORT ?= 8000
run: models
	@exec $(BIN)/python deploy/run_local.py --bin $(BIN) --host $(HOST) --port $(PORT) --backend-port $(BACKEND_PORT) \
		--model-dir $(MODEL_CACHE_DIR)

lint: $(STAMP)
	$(BIN)/ruff check $(SRC)/src $(SRC)/tests
	$(BIN)/mypy --config-file $(SRC)/pyproject.toml $(SRC)/src
	cd backend && ../$(BIN)/ruff check app tests && ../$(BIN)/mypy app
	$(BIN)/ruff check deploy testing
	$(BIN)/mypy --strict testing/ml_service_testing

# The dashboard test drives Debian's chromium; installed here when missing (root with apt-get), else it is skipped.
browser:
	@test -x /usr/bin/chromium || ! command -v apt-get >/dev/null || \
		(apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)) || \
		echo "chromium could not be installed: the dashboard test will be skipped"

# Debian's redis-server for the shared rate-limit tests (started by the suite on a free port)
redis:
	@command -v redis-server >/dev/null || ! command -v apt-get >/dev/null || \
		(apt-get install -y -qq redis-server >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq redis-server >/dev/null)) || \
		echo "redis-server could not be installed: the Redis tests will be skipped"

# Debian's PostgreSQL for the backend's DATABASE_URL=postgresql:// test (the test runs its own server on a free port)
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v apt-get >/dev/null || \
		(apt-get install -y -qq postgresql >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq postgresql >/dev/null)) || \
		echo "postgresql could not be installed: the PostgreSQL test will be skipped"

# Debian's docker-compose validates the compose files in `make test` (the engine is only for `make test-docker`)
compose-cli:
	@command -v docker-compose >/dev/null || ! command -v apt-get >/dev/null || \
		(apt-get install -y -qq docker-compose >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null)) || \
		echo "docker-compose could not be installed: the compose checks will be skipped"

test: lint browser redis postgres compose-cli
	cd $(SRC) && ../$(BIN)/python -m pytest -q
	cd backend && ../$(BIN)/python -m pytest -q
	cd deploy && ../$(BIN)/python -m pytest -q tests -m "not docker"

# The images and the compose stack built and run on a real Docker engine (started here when none runs)
test-docker: models compose-cli
	cd deploy && ../$(BIN)/python -m pytest -q tests -m docker

# Images. Offline (no route to the package index from a build): `make wheelhouse`, then WHEELHOUSE=wheelhouse.
IMAGE_TAG ?= 0.1.0
BASE_IMAGE ?= python:3.11-slim
DOCKER_BUILD = docker build --network host --build-arg BASE_IMAGE=$(BASE_IMAGE) $(if $(WHEELHOUSE),--build-arg WHEELHOUSE=$(WHEELHOUSE))
wheelhouse: $(STAMP)
	deploy/docker/wheelhouse.sh cpu backend

# Debian bookworm + Python 3.11 from this machine's apt sources, for machines without Docker Hub
base-image:
	deploy/docker/base-image.sh ml-service-base:bookworm

image:
	$(DOCKER_BUILD) -t ml-service:$(IMAGE_TAG) ml-service

image-gpu:
	$(DOCKER_BUILD) -f ml-service/Dockerfile.gpu -t ml-service:$(IMAGE_TAG)-gpu ml-service

image-backend:
	$(DOCKER_BUILD) -t ml-service-backend:$(IMAGE_TAG) backend

image-with-models: models image
	docker build -f ml-service/Dockerfile.models --build-arg IMAGE=ml-service:$(IMAGE_TAG) \
		-t ml-service:$(IMAGE_TAG)-models $(MODEL_CACHE_DIR)

unit: $(STAMP)
	cd $(SRC) && ../$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP)
	cd $(SRC) && ../$(BIN)/python -m pytest -q tests/integration

e2e: $(STAMP)
	cd $(SRC) && ../$(BIN)/python -m pytest -q tests/e2e

# schemathesis over every operation with many more examples than `make test`, plus the property tests
fuzz: $(STAMP)
	cd $(SRC) && FUZZ_EXAMPLES=300 ../$(BIN)/python -m pytest -q tests/integration/test_fuzz.py tests/unit/test_properties.py

clean:
	rm -rf $(VENV) $(MODEL_CACHE_DIR)

# Benchmarks (need wrk: apt-get install wrk). Results and the command go to docs/benchmarks.md by hand.
.PHONY: bench bench-limit bench-peers bench-fairness soak bench-gpu bench-parse bench-cold bench-memory
bench-limit: models
	$(BIN)/python bench/limit.py --model-dir $(MODEL_CACHE_DIR)

# On a machine with an NVIDIA GPU and onnxruntime-gpu (the GPU image has both): the in-process limit on the CPU and
# on CUDA, interleaved in one run; it stops if CUDA was asked for and not used
bench-gpu: models
	$(BIN)/python bench/limit.py --model-dir $(MODEL_CACHE_DIR) --versions 1,2 --devices cpu,cuda \
		--out bench/results/limit-gpu.json
	$(BIN)/python bench/limit.py --model-dir $(MODEL_CACHE_DIR) --model item-classifier --versions 1 \
		--devices cpu,cuda --out bench/results/limit-gpu-image.json

bench: models
	$(BIN)/python bench/serve.py --systems ml-service --model-dir $(MODEL_CACHE_DIR)

# spawn to /health/ready with all four models, 10 starts (a restart: with the load profiles); the first start after
# new files: --fresh; an A/B: --systems ml-service,ml-service@<rev>
bench-cold: models
	$(BIN)/python bench/coldstart.py --model-dir $(MODEL_CACHE_DIR)

bench-memory: models
	$(BIN)/python bench/memory.py --model-dir $(MODEL_CACHE_DIR)

# decoding request bodies, old (orjson + checks by hand, read from git) vs new (msgspec Structs) vs pydantic
bench-parse: $(STAMP)
	$(BIN)/python bench/parse.py

# one-sentence latency while a client sends 2,048-input requests (add ,ml-service@<rev> to compare a revision)
bench-fairness: models
	$(BIN)/python bench/fairness.py --systems ml-service --model-dir $(MODEL_CACHE_DIR)

# twice the measured capacity, open loop, 5 minutes: one answer per request, RSS, and issue 23's goals (accepted p99,
# goodput, refusals in milliseconds); an A/B: bench/soak.py --systems ml-service,ml-service@<rev> (not in `make test`)
soak: models
	$(BIN)/python bench/soak.py --model-dir $(MODEL_CACHE_DIR)

bench-peers: models
	bench/setup_peers.sh
	$(BIN)/python bench/infinity_model.py
	$(BIN)/python bench/serve.py --systems ml-service,infinity,litserve,naive --rounds 2 --no-image \
		--model-dir $(MODEL_CACHE_DIR) --out bench/results/peers.json
