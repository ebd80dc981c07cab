# `make demo` and `make test` each do all set-up on a fresh machine (a .venv from pyproject.toml,
# pinned by constraints.txt). Nothing else is needed first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARTIFACTS ?= artifacts

.PHONY: setup setup-jetson demo test test-fast bench lint format lock docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[build,dev]'
	touch $(STAMP)

# A Jetson: TensorRT comes with JetPack (its Python bindings live in the system site-packages,
# which the venv sees); cuda-python is pinned to JetPack's CUDA line by the constraints file that
# optimize/runtimes/tensorrt/install.py names for this L4T release (or it says why none fits).
# The Python that JetPack's TensorRT bindings are built for.
JETSON_PYTHON ?= /usr/bin/python3
setup-jetson:
	CONSTRAINTS=$$($(JETSON_PYTHON) optimize/runtimes/tensorrt/install.py) || exit 2; \
	test -x $(BIN)/python || $(JETSON_PYTHON) -m venv --system-site-packages $(VENV); \
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $$CONSTRAINTS -e '.[jetson]'; \
	$(BIN)/python -c 'import tensorrt' || { echo "JetPack's TensorRT does not import: sudo apt-get install python3-libnvinfer"; exit 2; }

demo: setup
	$(BIN)/optimize run recipes/resnet18-digits-edge.yaml --artifacts $(ARTIFACTS)

# Two test processes, each module in one of them (its module fixtures built once); the longest
# modules start first (tests/conftest.py).
test: setup
	$(BIN)/python -m pytest -n 2 --dist loadscope

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

bench: setup
	$(BIN)/python -m benchmarks

lint: setup
	$(BIN)/ruff check optimize tests benchmarks
	$(BIN)/ruff format --check optimize tests benchmarks

format: setup
	$(BIN)/ruff check --fix optimize tests benchmarks
	$(BIN)/ruff format optimize tests benchmarks

# Regenerate the recipe reference from the schema (a test fails when it is out of date).
docs: setup
	$(BIN)/optimize schema --format markdown > docs/recipe-reference.md

# Re-pin constraints.txt from the current environment after changing dependencies.
lock: setup
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^optimize' > constraints.txt

clean:
	rm -rf $(ARTIFACTS) .pytest_cache .ruff_cache
