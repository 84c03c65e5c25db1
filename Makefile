# Quick start: `make sample` (set up + run the job on the bundled sample), `make test` (set up + run the tests).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
SYSTEM_PACKAGES := dicom3tools dcmtk orthanc orthanc-dicomweb

.PHONY: setup system-deps sample test bench

setup: $(VENV)/.installed $(VENV)/.torchvision-ops

# torch is pinned through constraints.txt so pip takes the CPU wheel instead of GBs of CUDA packages.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# A start-up hook (.pth) that lets the CUDA-only torchvision import next to CPU torch, in every process (models/torch_compat.py).
$(VENV)/.torchvision-ops: $(VENV)/.installed models/torch_compat.py
	$(BIN)/python -m models.torch_compat --install
	touch $@

# Independent DICOM validators the tests use (dciodvfy, dcmdump, dcmcjpeg) and Orthanc + its DICOMweb plugin (tests/stores).
system-deps:
	@missing=""; for tool in dciodvfy dcmdump dcmcjpeg; do command -v $$tool >/dev/null || missing=1; done; \
	PATH="$$PATH:/usr/sbin" command -v Orthanc >/dev/null || missing=1; \
	ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so* >/dev/null 2>&1 || ls /usr/lib/orthanc/libOrthancDicomWeb.so* >/dev/null 2>&1 || missing=1; \
	if [ -n "$$missing" ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(SYSTEM_PACKAGES); \
	fi

sample: setup
	$(BIN)/bonehub sample --out output/sample

test: setup system-deps
	$(BIN)/python -m pytest -n 2

bench: setup
	$(BIN)/python -m bench
