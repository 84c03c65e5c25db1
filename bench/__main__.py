"""``python -m bench``: run every benchmark (or the ones named) and print each next to its anchor."""

from __future__ import annotations

import argparse

from bench import cost_model, plan_scale, qc_detection, qc_speed, reliability, report_scale, seg_encoding, stage1_overhead
from bench.skeleton_phantom import DEFAULT_SHAPE

QUICK_SHAPE = (80, 128, 128)  # slices, rows, columns: a smoke run in seconds, every bone still present
BENCHMARKS = ("seg_encoding", "stage1_overhead", "qc_speed", "qc_detection", "cost_model", "report_scale", "reliability", "plan_scale")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("benchmarks", nargs="*", metavar="BENCHMARK", help=f"one or more of {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help=f"small grid {' x '.join(map(str, QUICK_SHAPE))} instead of {' x '.join(map(str, DEFAULT_SHAPE))}")
    parser.add_argument("--repeats", type=int, default=3, help="seg_encoding: timed runs per method, median reported (default 3)")
    parser.add_argument("--phantom", action="store_true", help="qc_detection: also the whole-skeleton phantom (63 bones; several minutes)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if unknown := sorted(set(args.benchmarks) - set(BENCHMARKS)):
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}: choose from {', '.join(BENCHMARKS)}")  # argparse's choices reject an empty list
    shape = QUICK_SHAPE if args.quick else DEFAULT_SHAPE
    chosen = args.benchmarks or BENCHMARKS
    if "seg_encoding" in chosen:
        seg_encoding.run(shape, repeats=args.repeats)
    if "stage1_overhead" in chosen:
        stage1_overhead.run(shape)
    if "qc_speed" in chosen:  # --quick: the anchor runs on every bone, so equality is checked for all of them
        qc_speed.run(shape, measured_bones=None if args.quick else qc_speed.ANCHOR_BONES)
    if "qc_detection" in chosen:
        qc_detection.run(phantom_shape=(shape if args.quick else qc_detection.PHANTOM_SHAPE) if args.phantom else None)
    if "cost_model" in chosen:  # arithmetic over recorded measurements (bench/cost_model.py): nothing is timed
        cost_model.run()
    if "reliability" in chosen:  # --quick: one kill -9 trial instead of five
        reliability.run(kills=1 if args.quick else 5)
    if "report_scale" in chosen:  # --quick: 1,000 series against 100 instead of 100,000 against 1,000
        report_scale.run(*(report_scale.QUICK_SERIES if args.quick else (report_scale.FULL_SERIES, report_scale.ANCHOR_SERIES)))
    if "plan_scale" in chosen:  # the whole NLST collection from the bundled index, offline: no --quick form
        plan_scale.run()


if __name__ == "__main__":
    main()
