# `make demo` and `make test` each create .venv on a fresh machine.
VENV        := .venv
PY          := $(VENV)/bin/python
BACKENDS    := tensorflow jax torch
# Tests and the demo read the offline CIFAR-10 copy when it is there.
SEPCONV_DATA ?= $(abspath ../shared/data/cifar10-jpeg.tar.gz)
export SEPCONV_DATA
PYTEST      := $(PY) -m pytest -q -p no:cacheprovider

.PHONY: venv test test-fast demo clean

$(VENV)/.installed: pyproject.toml requirements-ci.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-ci.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# Fast tests on every backend, then the slow ones once on the default backend.
# (pytest exits 5 when a marker selects nothing: not a failure here.)
test: venv
	@for backend in $(BACKENDS); do \
		echo "== KERAS_BACKEND=$$backend"; \
		KERAS_BACKEND=$$backend $(PYTEST) -m "not slow" || exit 1; \
	done
	@echo "== KERAS_BACKEND=tensorflow (slow tests)"
	@KERAS_BACKEND=tensorflow $(PYTEST) -m slow; status=$$?; [ $$status -eq 0 ] || [ $$status -eq 5 ]

test-fast: venv
	KERAS_BACKEND=$${KERAS_BACKEND:-tensorflow} $(PYTEST) -m "not slow"

# The regular-vs-separable experiment, quick preset (a subset, few epochs);
# the full tutorial setting is `sepconv compare --recipe tutorial`.
demo: venv
	$(VENV)/bin/sepconv count --in 3 --out 64 --kernel 3
	$(VENV)/bin/sepconv summary vgg
	$(VENV)/bin/sepconv summary vgg_separable
	$(VENV)/bin/sepconv compare vgg vgg_separable --preset quick --quiet

clean:
	rm -rf $(VENV) runs .pytest_cache
