# One entry point for people and CI. `make test` and `make train` install what they need first.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
EPOCHS ?= 3
MODEL_ARGS ?= vgg38 --bn --residual
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install install-test data test train benchmark clean

install:  ## the library and its runtime dependencies (numpy, tqdm, matplotlib)
	$(PIP) install -q -e .

install-test:  ## plus pytest and the PyTorch CPU reference used by comparison tests
	$(PIP) install -q -e ".[test,ref]"

data:  ## Fashion-MNIST from Debian's dataset-fashion-mnist package, unless already there
	@if [ -f $(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST found in $(FASHION_MNIST_DIR)"; \
	else \
	  $(SUDO) apt-get install -y dataset-fashion-mnist || \
	  { $(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist; }; \
	fi

# Two workers with one BLAS thread each: more threads than cores makes small GEMMs much slower.
test: install-test  ## the whole test suite
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -n 2

# --resume: running `make train` again continues (or extends, with a larger EPOCHS) the same run.
train: install data  ## train vgg38 with BatchNorm and residual connections on Fashion-MNIST
	$(PYTHON) -m minidl.train $(MODEL_ARGS) --epochs $(EPOCHS) --resume

benchmark: install-test  ## im2col convolution vs PyTorch CPU, and the three conv algorithms
	$(PYTHON) -m benchmarks.conv_benchmark

clean:
	rm -rf build *.egg-info .pytest_cache
