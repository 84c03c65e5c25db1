"""``python -m bench``: run every benchmark and print each next to its anchor."""

from __future__ import annotations

import argparse

from bench import seg_encoding
from bench.skeleton_phantom import DEFAULT_SHAPE

QUICK_SHAPE = (80, 128, 128)  # slices, rows, columns: a smoke run in seconds, every bone still present


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"small grid {' x '.join(map(str, QUICK_SHAPE))} instead of {' x '.join(map(str, DEFAULT_SHAPE))}")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method, median reported (default 3)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    seg_encoding.run(QUICK_SHAPE if args.quick else DEFAULT_SHAPE, repeats=args.repeats)


if __name__ == "__main__":
    main()
