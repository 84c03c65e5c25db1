"""bench/cost_model.py's arithmetic: linear where it must be, ordered where it must be, prices as cited."""

from __future__ import annotations

from dataclasses import replace

import pytest
from apache_beam.testing.load_tests import dataflow_cost_consts as beam_costs

from bench.cost_model import (
    ASSUMPTIONS,
    CPU_WORKER,
    DATAFLOW_PRICES,
    L4_WORKER,
    MEASURED_300,
    T4_WORKER,
    Series,
    StepTimes,
    Worker,
    series_cost,
    table,
)

SERIES = Series(slices=MEASURED_300.slices, size_mb=100.0)


def test_prices_are_the_ones_the_cited_source_ships() -> None:
    """The model cites apache-beam's Dataflow cost constants: they must say what the model uses."""
    assert DATAFLOW_PRICES.vcpu_hour == beam_costs.VCPU_PER_HR_BATCH
    assert DATAFLOW_PRICES.memory_gb_hour == beam_costs.MEM_PER_GB_HR_BATCH
    assert DATAFLOW_PRICES.disk_gb_hour == beam_costs.PD_PER_GB_HR
    assert DATAFLOW_PRICES.gpu_hour["nvidia-tesla-t4"] == beam_costs.T4_PER_GPU_PER_HOUR
    assert DATAFLOW_PRICES.gpu_hour["nvidia-l4"] == beam_costs.L4_PER_GPU_PER_HOUR


def test_worker_hourly_price_is_the_sum_of_its_resources() -> None:
    hourly = Worker("w", vcpus=4, memory_gb=15, disk_gb=50, gpu="nvidia-tesla-t4", gpus=1).hourly(DATAFLOW_PRICES)
    assert hourly["vcpu"] == pytest.approx(4 * 0.056)
    assert hourly["memory"] == pytest.approx(15 * 0.003557)
    assert hourly["disk"] == pytest.approx(50 * 0.000054)
    assert hourly["gpu"] == pytest.approx(0.42)
    assert CPU_WORKER.hourly(DATAFLOW_PRICES)["gpu"] == 0
    assert L4_WORKER.usd_per_second(DATAFLOW_PRICES) > T4_WORKER.usd_per_second(DATAFLOW_PRICES)


def test_doubling_the_gpu_price_raises_only_the_gpu_workers_steps() -> None:
    cheap = series_cost(2, MEASURED_300, SERIES)
    dear_prices = replace(DATAFLOW_PRICES, gpu_hour={**DATAFLOW_PRICES.gpu_hour, "nvidia-l4": 2 * DATAFLOW_PRICES.gpu_hour["nvidia-l4"]})
    dear = series_cost(2, MEASURED_300, SERIES, prices=dear_prices)
    added = DATAFLOW_PRICES.gpu_hour["nvidia-l4"] / 3600
    for step, seconds in cheap.seconds.items():
        extra = seconds * added if step != "QC" else 0.0  # QC runs on CPU workers
        assert dear.usd_by_step[step] == pytest.approx(cheap.usd_by_step[step] + extra)


def test_doubling_gpu_seconds_doubles_the_inference_cost_and_nothing_else() -> None:
    base = series_cost(2, MEASURED_300, SERIES, ASSUMPTIONS)
    doubled = series_cost(2, MEASURED_300, SERIES, replace(ASSUMPTIONS, gpu_seconds_per_source=2 * ASSUMPTIONS.gpu_seconds_per_source))
    assert doubled.usd_by_step["inference (GPU)"] == pytest.approx(2 * base.usd_by_step["inference (GPU)"])
    assert doubled.usd - base.usd == pytest.approx(base.usd_by_step["inference (GPU)"])
    for step in base.seconds:
        if step != "inference (GPU)":
            assert doubled.seconds[step] == base.seconds[step]


def test_more_sources_cost_more_and_inference_grows_linearly() -> None:
    costs = [series_cost(n, MEASURED_300, SERIES) for n in (1, 2, 3)]
    assert costs[0].usd < costs[1].usd < costs[2].usd
    inference = [c.seconds["inference (GPU)"] for c in costs]
    assert inference == pytest.approx([ASSUMPTIONS.gpu_seconds_per_source * n for n in (1, 2, 3)])
    assert costs[0].seconds["download"] == costs[2].seconds["download"], "a series is downloaded once, whatever the sources"


def test_steps_add_up_to_the_total_at_their_workers_rates() -> None:
    cost = series_cost(3, MEASURED_300, SERIES, gpu_worker=T4_WORKER)
    assert sum(cost.usd_by_step.values()) == pytest.approx(cost.usd)
    gpu_rate = T4_WORKER.usd_per_second(DATAFLOW_PRICES)
    qc_rate = CPU_WORKER.usd_per_second(DATAFLOW_PRICES) / ASSUMPTIONS.lanes
    expected = (cost.total_seconds - cost.seconds["QC"]) * gpu_rate + cost.seconds["QC"] * qc_rate
    assert cost.usd == pytest.approx(expected)


def test_gpu_busy_bound_is_never_above_sequential() -> None:
    for n in (1, 2, 3):
        cost = series_cost(n, MEASURED_300, SERIES)
        assert cost.usd_gpu_busy <= cost.usd
        assert cost.gpu_busy_seconds >= cost.seconds["inference (GPU)"]


def test_download_scales_with_series_size_and_throughput() -> None:
    small = series_cost(1, MEASURED_300, SERIES)
    big = series_cost(1, MEASURED_300, replace(SERIES, size_mb=2 * SERIES.size_mb))
    fast = series_cost(1, MEASURED_300, SERIES, replace(ASSUMPTIONS, download_mb_per_s=2 * ASSUMPTIONS.download_mb_per_s))
    assert big.seconds["download"] == pytest.approx(2 * small.seconds["download"])
    assert fast.seconds["download"] == pytest.approx(small.seconds["download"] / 2)


def test_step_times_scale_linearly_with_slices() -> None:
    half = MEASURED_300.scaled(MEASURED_300.slices // 2)
    assert half.encode_s == pytest.approx(MEASURED_300.encode_s / 2)
    assert half.qc_s[3] == pytest.approx(MEASURED_300.qc_s[3] / 2)
    assert series_cost(1, MEASURED_300, Series(150, 100.0)).seconds["read CT"] == pytest.approx(MEASURED_300.read_ct_s / 2)


def test_consensus_seg_is_written_only_when_sources_can_agree() -> None:
    times = StepTimes(100, 1.0, 0.5, 2.0, 0.25, {1: 3.0, 2: 5.0}, 1.0, "test")
    one, two = (series_cost(n, times, Series(100, 50.0)) for n in (1, 2))
    assert one.seconds["QC"] == 3.0
    assert two.seconds["QC"] == 5.0 + 2.0 + 0.25
    assert (one.outputs_mib, two.outputs_mib) == (1.0, 3.0)


def test_refuses_what_it_cannot_price() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        series_cost(0, MEASURED_300, SERIES)
    with pytest.raises(ValueError, match="not measured with 4 members"):
        series_cost(4, MEASURED_300, SERIES)


def test_table_sensitivity_is_linear_in_gpu_seconds() -> None:
    result = table(MEASURED_300, SERIES, n_series=1000, gpu_seconds=(50.0, 100.0, 150.0))
    costs = result["gpu_sensitivity"]
    for n in range(3):
        step_1 = costs[100.0][n] - costs[50.0][n]
        step_2 = costs[150.0][n] - costs[100.0][n]
        assert step_1 == pytest.approx(step_2) and step_1 > 0
    rows = result["rows"]
    assert rows[1]["usd_idc_scale"] == pytest.approx(rows[1]["usd_per_series"] * 1000)
