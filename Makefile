# One entry point for people and CI. `make test` and `make train` install what they need first.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
EPOCHS ?= 3
MODEL_ARGS ?= vgg38 --bn --residual
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# JupyterLab refuses to start as root (containers, cloud machines) without this flag.
JUPYTER_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: install install-test data lint test train notebooks benchmark clean

install:  ## the library and its runtime dependencies (numpy, tqdm, matplotlib)
	$(PIP) install -q -e .

# Every optional part that has tests is installed here, so CI exercises it instead of skipping it.
install-test:  ## plus pytest, ruff, the notebook runner, numba, Ray and the PyTorch CPU reference
	$(PIP) install -q -e ".[test,ref,fast,cluster]"

data:  ## Fashion-MNIST from Debian's dataset-fashion-mnist package, unless already there
	@if [ -f $(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST found in $(FASHION_MNIST_DIR)"; \
	else \
	  $(SUDO) apt-get install -y dataset-fashion-mnist || \
	  { $(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist; }; \
	fi

lint: install-test  ## ruff (pyflakes rules, configured in pyproject.toml)
	$(PYTHON) -m ruff check .

# Two workers with one BLAS thread each: more threads than cores makes small GEMMs much slower.
# The notebooks run at their CI size (MINIDL_NOTEBOOK_SIZE=ci) and need Fashion-MNIST: hence `data`.
test: install-test data lint  ## the whole test suite, notebooks included
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MINIDL_KERNEL_THREADS=1 MINIDL_NOTEBOOK_SIZE=ci \
	  $(PYTHON) -m pytest -q -n 2

# --resume: running `make train` again continues (or extends, with a larger EPOCHS) the same run.
train: install data  ## train vgg38 with BatchNorm and residual connections on Fashion-MNIST
	$(PYTHON) -m minidl.train $(MODEL_ARGS) --epochs $(EPOCHS) --resume

notebooks: install data  ## JupyterLab in notebooks/ (the teaching notebooks)
	$(PIP) install -q -e ".[notebooks]"
	cd notebooks && $(PYTHON) -m jupyter lab $(JUPYTER_ROOT)

benchmark: install-test  ## minidl vs PyTorch CPU: conv (three ways), BatchNorm, activations, a vgg38 step
	$(PYTHON) -m minidl.bench --kernels both

clean:
	rm -rf build *.egg-info .pytest_cache
