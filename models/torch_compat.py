"""Make ``import torchvision`` work when its compiled ops cannot load (CUDA torchvision with CPU torch).

torchvision registers fake kernels for ``torchvision::nms`` at import time; when its ``_C``
extension fails to load (e.g. a CUDA build next to CPU torch) those ops were never defined and the
import dies with ``RuntimeError: operator torchvision::nms does not exist``. timm imports
torchvision and nnU-Net's trainer lookup imports timm, so TotalSegmentator and MOOSE inference die
with it. The fix: define the two op schemas torchvision expects, only when its real ops cannot
load, before torchvision is first imported. Nothing of ours calls these ops; they are declarations.

A ``.pth`` file in the environment's site-packages (``python -m models.torch_compat --install``)
puts a finder on ``sys.meta_path`` at interpreter start-up, so spawned worker processes get it too.
The finder costs nothing until the module ``torchvision`` is imported: only then does it import
torch, decide, and step aside for the normal import.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import sys
import sysconfig
from pathlib import Path

PTH_NAME = "bonehub_torchvision_ops.pth"
"""Sorts after setuptools' ``__editable__.*.pth``, whose finder makes ``models`` importable."""

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
)
_PTH_LINE = (
    'import importlib.util; importlib.util.find_spec("models") is not None and '
    '__import__("models.torch_compat").torch_compat.install_import_hook()\n'
)
_declared = None  # the torch.library.Library holding our schemas: registrations die with the object


def register_torchvision_ops() -> bool:
    """Declare torchvision's ``nms``/``qnms`` schemas unless its real ops exist or can be loaded.

    Returns True when the declarations were made (now or before), False when the real ops are
    available (or torchvision is not installed). Safe to call any number of times.
    """
    global _declared
    uninstall_import_hook()  # its job is done, and find_spec("torchvision") below must not re-enter it
    import torch

    if _declared is not None:
        return True
    spec = importlib.util.find_spec("torchvision")
    if spec is None or _has_nms(torch) or _load_real_ops(torch, spec):
        return False
    library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        library.define(schema)
    _declared = library
    return True


def _has_nms(torch) -> bool:
    return hasattr(torch.ops.torchvision, "nms")


def _load_real_ops(torch, spec: importlib.machinery.ModuleSpec) -> bool:
    """Load torchvision's compiled ops the way torchvision itself does; False when they cannot load."""
    extension = _extension_path(spec)
    if extension is None:
        return False
    try:
        torch.ops.load_library(extension)
    except (ImportError, OSError):
        return False
    return _has_nms(torch)


def _extension_path(spec: importlib.machinery.ModuleSpec) -> str | None:
    """Path of torchvision's ``_C`` extension, found without importing torchvision."""
    loader = (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES)
    for folder in spec.submodule_search_locations or ():
        found = importlib.machinery.FileFinder(folder, loader).find_spec("torchvision._C")
        if found is not None and found.origin:
            return found.origin
    return None


class _TorchvisionOpsFinder:
    """A meta-path finder that acts once, when ``torchvision`` is imported, and finds nothing itself."""

    @classmethod
    def find_spec(cls, fullname: str, path=None, target=None):
        if fullname == "torchvision":
            register_torchvision_ops()
        return None


def install_import_hook() -> None:
    """Run ``register_torchvision_ops`` right before torchvision is first imported (no-op if imported already)."""
    if "torchvision" not in sys.modules and _TorchvisionOpsFinder not in sys.meta_path:
        sys.meta_path.insert(0, _TorchvisionOpsFinder)


def uninstall_import_hook() -> None:
    if _TorchvisionOpsFinder in sys.meta_path:
        sys.meta_path.remove(_TorchvisionOpsFinder)


def install_pth(site_packages: str | Path | None = None) -> Path:
    """Write the start-up hook into ``site_packages`` (default: this interpreter's purelib)."""
    folder = Path(site_packages or sysconfig.get_paths()["purelib"])
    target = folder / PTH_NAME
    target.write_text(_PTH_LINE)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.torch_compat", description=__doc__.split("\n")[0])
    parser.add_argument("--install", action="store_true", help=f"write {PTH_NAME} into this environment's site-packages")
    args = parser.parse_args(argv)
    if args.install:
        print(f"installed {install_pth()}")
    else:
        declared = register_torchvision_ops()
        print("torchvision ops: " + ("declared by models.torch_compat (compiled ops unavailable)" if declared else "real ops available"))


if __name__ == "__main__":
    from models.torch_compat import main as canonical_main  # the module copy the start-up hook uses

    canonical_main()
