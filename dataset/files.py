"""The files of one export folder, written only where their bytes change, so reruns touch nothing.

Every file goes through ``ExportFiles``: its new bytes are made under a hidden
temporary name in the target folder, compared with what is there, and renamed
over it only when they differ (else the temporary file is dropped and the old
file keeps its mtime). Inside ``item()`` (one series) the files are renamed
together at the end, and none of them when the series fails, so no series is
left half written. An export lists the files it made in its data card;
``remove_stale`` deletes the files an earlier export listed that this one did
not make (a series no longer selected), and nothing else.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from dataset.errors import ExportInputError

TEMP_PREFIX = ".partial."


class ExportFiles:
    """The files written into ``root`` by one export, by path relative to it (POSIX form)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.digests: dict[str, str] = {}  # relative path -> sha256 of every file this export made
        self.changed: list[str] = []  # ... of those, the ones whose bytes were new
        self._staged: list[tuple[str, Path, Path, str]] | None = None  # inside item(): (relative, temp, target, digest)

    @contextmanager
    def item(self) -> Iterator[None]:
        """Files put inside the block are renamed into place together at its end; none when it raises."""
        self._staged = staged = []
        try:
            yield
        except BaseException:
            for _, temporary, _, _ in staged:
                temporary.unlink(missing_ok=True)
            raise
        finally:
            self._staged = None
        for relative, temporary, target, digest in staged:
            self._settle(relative, temporary, target, digest)

    def put_bytes(self, relative: str, data: bytes) -> bool:
        """Write ``data`` at ``relative`` unless the file already holds exactly it; True when written."""
        return self.put_with(relative, lambda path: path.write_bytes(data))

    def put_with(self, relative: str, write: Callable[[Path], object]) -> bool:
        """Let ``write`` make the file at a temporary path (same name ending), then keep it only if it differs.

        Returns whether the file changes (inside ``item()``: will change, at the end of the block).
        """
        target = self._target(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(TEMP_PREFIX + target.name)
        try:
            write(temporary)
            digest = hashlib.sha256(temporary.read_bytes()).hexdigest()
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        if self._staged is not None:
            self._staged.append((relative, temporary, target, digest))
            return not _same(target, temporary)
        return self._settle(relative, temporary, target, digest)

    def _settle(self, relative: str, temporary: Path, target: Path, digest: str) -> bool:
        self.digests[relative] = digest
        if _same(target, temporary):
            temporary.unlink()
            return False
        os.replace(temporary, target)
        self.changed.append(relative)
        return True

    def remove_stale(self, listed_before: Iterable[str]) -> list[str]:
        """Delete the files an earlier export listed that this one did not make; returns them, sorted."""
        stale = sorted(set(listed_before) - set(self.digests))
        for relative in stale:
            target = self._target(relative)
            target.unlink(missing_ok=True)
            for folder in target.parents:  # folders left empty go too, up to the export root
                if folder == self.root or not folder.is_dir() or any(folder.iterdir()):
                    break
                folder.rmdir()
        return stale

    def _target(self, relative: str) -> Path:
        parts = PurePosixPath(relative).parts
        if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
            raise ExportInputError(f"export file name {relative!r} would leave the export folder {self.root}")
        return self.root.joinpath(*parts)


def _same(target: Path, temporary: Path) -> bool:
    return target.is_file() and target.stat().st_size == temporary.stat().st_size and \
        target.read_bytes() == temporary.read_bytes()
