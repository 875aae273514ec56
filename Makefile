# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Needs Python 3.11+, Java 17+ and Maven on PATH; everything else is installed here.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The image and Kubernetes scripts (Python, standard library plus PyYAML from the venv).
K8S_SCRIPTS := scripts/chart-tools scripts/k8s-check scripts/image

.PHONY: demo test bench bench-e2e lint typecheck tools venv kafka-start kafka-stop clean help
.PHONY: chart-tools k8s-check image

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	@echo "creating $(VENV) and installing the bridge with its dev tools from PyPI (about 45 MB of packages, 190 MB installed; first run only)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)  ## create the virtualenv and install the bridge with its dev tools

REPLICAS ?= 1
demo: $(STAMP)  ## start a local Kafka and the simulator, run the bridge ~20 s, show data flowing (REPLICAS=3: a group)
	$(BIN)/python scripts/demo --replicas $(REPLICAS) $(if $(filter-out 1,$(REPLICAS)),--seconds 45)

test: $(STAMP) lint typecheck tools chart-tools  ## lint, type-check and run the whole suite (a real broker included)
	PYTHONASYNCIODEBUG=1 $(BIN)/pytest

tools:  ## what the tests use: kcat (Debian package), Kafka's jars and a schema registry (Maven Central, cached in .cache/)
	@command -v kcat >/dev/null || command -v kafkacat >/dev/null || { \
	  echo "installing kcat, the independent Kafka client the tests read keys with (Debian package, once)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q kcat >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q kcat >/dev/null; }; }
	@echo "kcat: $$(command -v kcat || command -v kafkacat) (Debian package)"
	@$(PYTHON) scripts/kafka-local fetch
	@$(PYTHON) scripts/registry-local fetch

chart-tools: $(STAMP)  ## helm, kubeconform, promtool, Kubernetes schemas and CRDs for the chart tests (.cache/tools)
	$(BIN)/python scripts/chart-tools install

k8s-check: $(STAMP)  ## the chart against a real kube-apiserver with PodSecurity restricted (builds it once, ~5 min)
	$(BIN)/python scripts/chart-tools install --api-server
	$(BIN)/python scripts/k8s-check

image: $(STAMP) chart-tools  ## build the Containerfile with buildah, smoke-run it with podman, export an OCI archive
	$(BIN)/python scripts/image build
	$(BIN)/python scripts/image smoke
	$(BIN)/python scripts/image export

bench: $(STAMP) tools  ## every benchmark, as ratios against baselines in the same run (starts its own brokers)
	$(BIN)/python bench/bench_pipeline.py
	$(BIN)/python bench/bench_sink.py
	$(BIN)/python bench/bench_simulator.py
	$(BIN)/python bench/bench_hot_path.py
	$(BIN)/python bench/bench_e2e.py

bench-e2e: $(STAMP) tools  ## simulator -> bridge -> broker at fixed loads, vs a naive bridge and Kafka's ceiling (bench/results/)
	$(BIN)/python bench/bench_e2e.py

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check bridge tests scripts/kafka-local scripts/registry-local scripts/local_service.py scripts/demo bench $(K8S_SCRIPTS)
	$(BIN)/ruff format --check bridge tests scripts/kafka-local scripts/registry-local scripts/local_service.py scripts/demo bench $(K8S_SCRIPTS)

typecheck: $(STAMP)  ## mypy --strict on the package and the tests
	$(BIN)/mypy --strict bridge tests bench

kafka-start:  ## start the local broker on 127.0.0.1:9092 (prints the bootstrap address)
	$(PYTHON) scripts/kafka-local start

kafka-stop:  ## stop the local broker
	$(PYTHON) scripts/kafka-local stop

clean:  ## remove the virtualenv and caches (the Kafka jars in .cache/ too)
	rm -rf $(VENV) .cache .mypy_cache .pytest_cache .ruff_cache .hypothesis

# The stream processors of the consumer tests (tests/consumers): Flink runners built by Maven, pyspark
# virtualenvs and Spark's Maven packages, all cached under .cache/ and printed when downloaded.
.PHONY: consumer-tools
test: consumer-tools
consumer-tools: $(STAMP)  ## Flink 1.20/2.2 and Spark 3.5/4.x for the consumer tests (cached in .cache/)
	$(BIN)/python -m tests.consumers.tools
