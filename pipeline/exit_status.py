"""What ``bonehub``'s exit status says, so scripts and schedulers can act on it.

- 0: everything asked for is done: every output stored (or found stored), every series through QC.
- 2: bad input or arguments, found before any work (or nothing usable was given); one line on stderr.
- 3: the command ran to the end, but some items failed (each listed above it, and in the manifest or
  QC tables with its reason); a rerun retries only those.
- 1: a bug (a Python traceback); please report it.
"""

from __future__ import annotations

OK, BUG, BAD_INPUT, SOME_FAILED = 0, 1, 2, 3


class SomeItemsFailed(Exception):
    """The command finished, and ``count`` of its items failed (listed above); ``bonehub`` exits with 3."""

    def __init__(self, count: int, what: str):
        super().__init__(f"{count} {what} failed (listed above); a rerun retries them")
        self.count = count
