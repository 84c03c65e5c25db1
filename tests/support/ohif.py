"""The OHIF viewer and a headless Chromium for browser tests, with the one-time install they need.

OHIF is npm's prebuilt ``@ohif/app`` (its ``dist/`` is a static web app): fetched once per machine
with ``npm pack`` (npm checks the registry's integrity hash) and unpacked into the test cache
(``$BONEHUB_TEST_CACHE`` or ``~/.cache/bonehub-tests``); no OHIF code lives in the repository.
Chromium is Debian's, driven by Playwright (PyPI ``playwright``, no browser download).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from tests.support.nnunet_standin import cache_root

OHIF_PACKAGE = "@ohif/app"
OHIF_VERSION = "3.13.2"
CHROMIUM_CANDIDATES = ("chromium", "/usr/bin/chromium")
# headless on a machine with a closed network: no background connections, no GPU, no sandbox as root
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-quic", "--disable-sync",
)
NPM_TIMEOUT_S = 600


class ToolMissingError(RuntimeError):
    """A program the browser tests need is not installed; the message says what installs it."""


def ohif_dist(version: str = OHIF_VERSION) -> Path:
    """OHIF's ``dist/`` folder for ``version``, fetched and unpacked on first use (~50 MB download)."""
    root = cache_root() / f"ohif-app-{version}"
    dist = root / "dist"
    if (dist / "index.html").is_file():
        return dist
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel pytest workers: one download
        if not (dist / "index.html").is_file():
            _fetch_dist(version, root)
    return dist


def _fetch_dist(version: str, root: Path) -> None:
    npm = shutil.which("npm")
    if not npm:
        raise ToolMissingError("npm is missing: `make test` installs it (Debian packages nodejs and npm)")
    with tempfile.TemporaryDirectory(dir=root) as work:
        done = subprocess.run([npm, "pack", f"{OHIF_PACKAGE}@{version}", "--pack-destination", work, "--silent"],
                              capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
        tarballs = sorted(Path(work).glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            raise RuntimeError(f"`npm pack {OHIF_PACKAGE}@{version}` failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        unpacked = Path(work) / "unpacked"
        with tarfile.open(tarballs[0]) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("package/dist/")]
            tar.extractall(unpacked, members=members, filter="data")
        if not (unpacked / "package" / "dist" / "index.html").is_file():
            raise RuntimeError(f"{tarballs[0].name} has no dist/index.html: not the prebuilt OHIF app")
        (unpacked / "package" / "dist").rename(root / "dist")  # same file system: the folder appears whole


def chromium_executable() -> str:
    """Debian's Chromium binary."""
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found and os.access(found, os.X_OK):
            return found
    raise ToolMissingError("chromium is missing: `make test` installs it (Debian package chromium)")


def require_playwright() -> None:
    """Fail with a useful message when the Python driver is not installed."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as error:
        raise ToolMissingError("the Python package playwright is missing: `make test` installs it "
                               "(the `test` extra of pyproject.toml)") from error
