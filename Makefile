# One command each: `make demo` and `make test` set up .venv and run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of PyTorch for this machine; on a GPU machine install your CUDA build of torch first.
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.pmv-installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH_PIN)"
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pmv demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo_out .pytest_cache
