# Quick start: `make sample` (set up + run the job on the bundled sample), `make test` (set up + run the tests).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
SYSTEM_PACKAGES := dicom3tools dcmtk orthanc orthanc-dicomweb chromium

.PHONY: setup system-deps sample test bench tools

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

# checkov (tests/cloud/test_terraform.py) pins ~80 packages, some older than ours (boto3, networkx, packaging):
# it gets its own venv so installing it never changes a package of .venv.
TOOLS_VENV ?= .venv-tools
CHECKOV_VERSION := 3.3.30
tools: $(TOOLS_VENV)/.checkov-$(CHECKOV_VERSION)
$(TOOLS_VENV)/.checkov-$(CHECKOV_VERSION):
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

# Independent DICOM validators the tests use (dciodvfy, dcmdump, dcmcjpeg) and Orthanc + its DICOMweb plugin (tests/stores);
# Chromium and npm for the OHIF viewer test (tests/stores/test_ohif_viewer.py; Debian's nodejs/npm only where no npm is installed).
system-deps:
	@missing=""; for tool in dciodvfy dcmdump dcmcjpeg; do command -v $$tool >/dev/null || missing=1; done; \
	PATH="$$PATH:/usr/sbin" command -v Orthanc >/dev/null || missing=1; \
	ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so* >/dev/null 2>&1 || ls /usr/lib/orthanc/libOrthancDicomWeb.so* >/dev/null 2>&1 || missing=1; \
	command -v chromium >/dev/null || missing=1; \
	node_pkgs=""; command -v npm >/dev/null || { missing=1; node_pkgs="nodejs npm"; }; \
	if [ -n "$$missing" ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(SYSTEM_PACKAGES) $$node_pkgs; \
	fi

sample: setup
	$(BIN)/bonehub sample --out output/sample

test: setup system-deps tools
	$(BIN)/python -m pytest -n 2

bench: setup
	$(BIN)/python -m bench
