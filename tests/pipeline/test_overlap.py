"""``Overlap`` keeps submission order, holds one call per thread in flight, and hands back what a call raised."""

import threading
import time

import pytest

from pipeline.overlap import Overlap


def test_results_come_in_submission_order_with_known_results_in_their_place():
    with Overlap(threads=2) as work:
        work.submit(lambda: time.sleep(0.2) or "slow")
        work.add("known")
        work.submit(lambda: "fast")
    assert work.results() == ["slow", "known", "fast"]


def test_no_more_calls_run_at_once_than_there_are_threads():
    running, most, lock = [0], [0], threading.Lock()

    def call(index: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return index

    with Overlap(threads=2) as work:
        for index in range(8):
            work.submit(call, index)
            assert sum(not f.done() for f in work._futures) <= 2  # submit waited for a free thread
    assert work.results() == list(range(8)) and most[0] == 2


def test_an_exception_a_call_raised_is_raised_by_results():
    with Overlap(threads=2) as work:
        work.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        work.results()
