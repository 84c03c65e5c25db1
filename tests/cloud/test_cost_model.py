"""bench/cost_model.py's arithmetic: steps billed on the worker that runs them, linear where it must be, prices as cited."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest
from apache_beam.testing.load_tests import dataflow_cost_consts as beam_costs

from bench.cost_model import (
    ASSUMPTIONS,
    CPU_STEPS,
    CPU_WORKER,
    DATAFLOW_PRICES,
    GPU_STEPS,
    L4_WORKER,
    MEASURED_152,
    MEASURED_300,
    T4_WORKER,
    Series,
    StepTimes,
    Worker,
    series_cost,
    staging_transfer_s,
    table,
)

SERIES = Series(slices=MEASURED_152.slices, size_mb=100.0)
# Round numbers, so that the expected seconds can be written out by hand.
TIMES = StepTimes(
    slices=100, read_ct_s=1.0, stage_ct_s=0.5, read_staged_ct_s=0.25, harmonize_s=0.5, put_labels_s=0.125,
    get_labels_s=0.0625, encode_s=2.0, store_s=0.25, qc_s={1: 3.0, 2: 5.0, 3: 6.0}, seg_mib=1.0,
    staged_ct_mib=50.0, labels_mib=2.0, source="test",
)
TIMES_SERIES = Series(slices=100, size_mb=50.0)
MB = 2**20 / 1e6  # MB per MiB


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


def test_placement_follows_the_segment_job() -> None:
    """Only Predict has the accelerator: inference, harmonize and its staging I/O; the rest is on CPU workers."""
    assert set(GPU_STEPS) == {"inference (GPU)", "harmonize", "staging I/O (GPU)", "worker start-up"}
    assert set(CPU_STEPS) == {"download", "read CT", "stage CT", "read staged", "encode+store", "QC"}
    assert set(series_cost(1, TIMES, TIMES_SERIES).seconds) == set(GPU_STEPS) | set(CPU_STEPS)


def test_doubling_the_gpu_price_raises_only_the_gpu_workers_steps() -> None:
    cheap = series_cost(2, MEASURED_152, SERIES)
    dear_prices = replace(DATAFLOW_PRICES, gpu_hour={**DATAFLOW_PRICES.gpu_hour, "nvidia-l4": 2 * DATAFLOW_PRICES.gpu_hour["nvidia-l4"]})
    dear = series_cost(2, MEASURED_152, SERIES, prices=dear_prices)
    added = DATAFLOW_PRICES.gpu_hour["nvidia-l4"] / 3600
    for step, seconds in cheap.seconds.items():
        extra = seconds * added if step in GPU_STEPS else 0.0
        assert dear.usd_by_step[step] == pytest.approx(cheap.usd_by_step[step] + extra), step
    for step in ("download", "read CT", "stage CT", "read staged", "encode+store", "QC"):
        assert dear.usd_by_step[step] == cheap.usd_by_step[step], f"{step} runs on a CPU worker"
    assert dear.usd_by_step["staging I/O (GPU)"] > cheap.usd_by_step["staging I/O (GPU)"]
    assert dear.usd_by_step["harmonize"] > cheap.usd_by_step["harmonize"]


def test_a_dearer_cpu_worker_raises_only_the_cpu_steps() -> None:
    cheap = series_cost(2, MEASURED_152, SERIES, gpu_worker=T4_WORKER)
    dear = series_cost(2, MEASURED_152, SERIES, gpu_worker=T4_WORKER, cpu_worker=replace(CPU_WORKER, vcpus=2 * CPU_WORKER.vcpus))
    for step in GPU_STEPS:
        assert dear.usd_by_step[step] == cheap.usd_by_step[step]
    for step in CPU_STEPS:
        assert dear.usd_by_step[step] > cheap.usd_by_step[step], step


def test_download_read_encode_and_store_are_billed_at_the_cpu_rate() -> None:
    cost = series_cost(3, MEASURED_152, SERIES, gpu_worker=T4_WORKER)
    cpu_rate = CPU_WORKER.usd_per_second(DATAFLOW_PRICES) / ASSUMPTIONS.lanes
    gpu_rate = T4_WORKER.usd_per_second(DATAFLOW_PRICES)
    for step in ("download", "read CT", "stage CT", "read staged", "encode+store", "QC"):
        assert cost.usd_per_second[step] == pytest.approx(cpu_rate), step
    for step in ("inference (GPU)", "harmonize", "staging I/O (GPU)", "worker start-up"):
        assert cost.usd_per_second[step] == pytest.approx(gpu_rate), step
    assert cpu_rate < gpu_rate


def test_steps_are_the_measured_seconds_plus_the_assumed_transfers() -> None:
    a = replace(ASSUMPTIONS, staging_mb_per_s=10.0, download_mb_per_s=25.0)
    ct_s, labels_s = 50.0 * MB / 10.0, 2.0 * MB / 10.0
    assert staging_transfer_s(50.0, a) == pytest.approx(ct_s)
    seconds = series_cost(2, TIMES, TIMES_SERIES, a).seconds
    assert seconds["download"] == pytest.approx(50.0 / 25.0)
    assert seconds["read CT"] == 1.0
    assert seconds["stage CT"] == pytest.approx(0.5 + ct_s)
    assert seconds["harmonize"] == pytest.approx(2 * 0.5)
    assert seconds["staging I/O (GPU)"] == pytest.approx(0.25 + ct_s + 2 * (0.125 + labels_s))
    assert seconds["read staged"] == pytest.approx(0.25 + ct_s + 2 * (0.0625 + labels_s))
    assert seconds["encode+store"] == pytest.approx(2 * (2.0 + 0.25))
    assert seconds["QC"] == pytest.approx(5.0 + 2.0 + 0.25)


def test_staging_throughput_scales_only_the_staging_steps() -> None:
    fast = series_cost(3, TIMES, TIMES_SERIES, replace(ASSUMPTIONS, staging_mb_per_s=100.0))
    slow = series_cost(3, TIMES, TIMES_SERIES, replace(ASSUMPTIONS, staging_mb_per_s=50.0))
    ct_extra, labels_extra = 50.0 * MB / 100.0, 2.0 * MB / 100.0  # halving the throughput doubles each transfer
    assert slow.seconds["stage CT"] - fast.seconds["stage CT"] == pytest.approx(ct_extra)
    assert slow.seconds["staging I/O (GPU)"] - fast.seconds["staging I/O (GPU)"] == pytest.approx(ct_extra + 3 * labels_extra)
    assert slow.seconds["read staged"] - fast.seconds["read staged"] == pytest.approx(ct_extra + 3 * labels_extra)
    for step in set(fast.seconds) - {"stage CT", "staging I/O (GPU)", "read staged"}:
        assert slow.seconds[step] == fast.seconds[step], step
    assert slow.usd > fast.usd


def test_doubling_gpu_seconds_doubles_the_inference_cost_and_nothing_else() -> None:
    base = series_cost(2, MEASURED_152, SERIES, ASSUMPTIONS)
    doubled = series_cost(2, MEASURED_152, SERIES, replace(ASSUMPTIONS, gpu_seconds_per_source=2 * ASSUMPTIONS.gpu_seconds_per_source))
    assert doubled.usd_by_step["inference (GPU)"] == pytest.approx(2 * base.usd_by_step["inference (GPU)"])
    assert doubled.usd - base.usd == pytest.approx(base.usd_by_step["inference (GPU)"])
    for step in base.seconds:
        if step != "inference (GPU)":
            assert doubled.seconds[step] == base.seconds[step]


def test_more_sources_cost_more_and_per_output_steps_grow_linearly() -> None:
    costs = [series_cost(n, TIMES, TIMES_SERIES) for n in (1, 2, 3)]
    assert costs[0].usd < costs[1].usd < costs[2].usd
    inference = [c.seconds["inference (GPU)"] for c in costs]
    assert inference == pytest.approx([ASSUMPTIONS.gpu_seconds_per_source * n for n in (1, 2, 3)])
    for step in ("download", "read CT", "stage CT"):
        assert costs[0].seconds[step] == costs[2].seconds[step], f"{step}: once per series, whatever the sources"
    label_s = staging_transfer_s(TIMES.labels_mib)
    assert costs[2].seconds["staging I/O (GPU)"] - costs[0].seconds["staging I/O (GPU)"] == pytest.approx(2 * (TIMES.put_labels_s + label_s))
    assert costs[2].seconds["read staged"] - costs[0].seconds["read staged"] == pytest.approx(2 * (TIMES.get_labels_s + label_s))
    assert costs[2].seconds["encode+store"] == pytest.approx(3 * costs[0].seconds["encode+store"])


def test_steps_add_up_to_the_total_at_their_workers_rates() -> None:
    cost = series_cost(3, MEASURED_152, SERIES, gpu_worker=T4_WORKER)
    assert sum(cost.usd_by_step.values()) == pytest.approx(cost.usd)
    gpu_rate = T4_WORKER.usd_per_second(DATAFLOW_PRICES)
    cpu_rate = CPU_WORKER.usd_per_second(DATAFLOW_PRICES) / ASSUMPTIONS.lanes
    gpu_s = sum(cost.seconds[s] for s in GPU_STEPS)
    cpu_s = sum(cost.seconds[s] for s in CPU_STEPS)
    assert gpu_s + cpu_s == pytest.approx(cost.total_seconds)
    assert cost.usd == pytest.approx(gpu_s * gpu_rate + cpu_s * cpu_rate)
    assert cost.usd_gpu_worker == pytest.approx(gpu_s * gpu_rate)


def test_gpu_busy_bound_overlaps_only_the_gpu_workers_own_steps() -> None:
    for n in (1, 2, 3):
        cost = series_cost(n, MEASURED_152, SERIES)
        assert cost.usd_gpu_busy <= cost.usd
        assert cost.gpu_busy_seconds >= cost.seconds["inference (GPU)"]
    # with no inference the GPU worker is busy with harmonize and its staging I/O, spread over the lanes
    idle = series_cost(2, TIMES, TIMES_SERIES, replace(ASSUMPTIONS, gpu_seconds_per_source=0.0))
    own = idle.seconds["harmonize"] + idle.seconds["staging I/O (GPU)"]
    assert idle.gpu_busy_seconds == pytest.approx(own / ASSUMPTIONS.lanes)
    gpu_rate = L4_WORKER.usd_per_second(DATAFLOW_PRICES)
    cpu_usd = sum(idle.usd_by_step[s] for s in CPU_STEPS)
    assert idle.usd_gpu_busy == pytest.approx(idle.gpu_busy_seconds * gpu_rate + cpu_usd + idle.usd_by_step["worker start-up"])
    # 2 x 77 s of inference hide all of the GPU worker's own steps; download, read, encode and store are
    # billed on CPU workers in both bounds, so the overlap saves nothing on them
    busy = series_cost(2, TIMES, TIMES_SERIES)
    assert busy.usd - busy.usd_gpu_busy == pytest.approx(own * gpu_rate)


def test_download_scales_with_series_size_and_throughput() -> None:
    small = series_cost(1, MEASURED_152, SERIES)
    big = series_cost(1, MEASURED_152, replace(SERIES, size_mb=2 * SERIES.size_mb))
    fast = series_cost(1, MEASURED_152, SERIES, replace(ASSUMPTIONS, download_mb_per_s=2 * ASSUMPTIONS.download_mb_per_s))
    assert big.seconds["download"] == pytest.approx(2 * small.seconds["download"])
    assert fast.seconds["download"] == pytest.approx(small.seconds["download"] / 2)


def test_step_times_scale_linearly_with_slices() -> None:
    double = TIMES.scaled(2 * TIMES.slices)
    for field in fields(StepTimes):
        value = getattr(TIMES, field.name)
        if isinstance(value, float):
            assert getattr(double, field.name) == pytest.approx(2 * value), field.name
    assert double.qc_s[3] == pytest.approx(2 * TIMES.qc_s[3])
    assert series_cost(1, TIMES, Series(50, 100.0)).seconds["read CT"] == pytest.approx(TIMES.read_ct_s / 2)


def test_measured_inputs_are_complete_and_positive() -> None:
    for times in (MEASURED_152, MEASURED_300):
        for field in fields(StepTimes):
            value = getattr(times, field.name)
            if isinstance(value, float):
                assert value > 0, f"{times.slices} slices: {field.name}"
        assert sorted(times.qc_s) == [1, 2, 3, 9]
        assert times.labels_mib < times.staged_ct_mib


def test_consensus_seg_is_written_only_when_sources_can_agree() -> None:
    times = replace(TIMES, qc_s={1: 3.0, 2: 5.0})
    one, two = (series_cost(n, times, TIMES_SERIES) for n in (1, 2))
    assert one.seconds["QC"] == 3.0
    assert two.seconds["QC"] == 5.0 + 2.0 + 0.25
    assert (one.outputs_mib, two.outputs_mib) == (1.0, 3.0)


def test_refuses_what_it_cannot_price() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        series_cost(0, MEASURED_152, SERIES)
    with pytest.raises(ValueError, match="not measured with 4 members"):
        series_cost(4, MEASURED_152, SERIES)


def test_table_sensitivity_is_linear_in_gpu_seconds_and_falls_with_staging_throughput() -> None:
    result = table(MEASURED_152, SERIES, n_series=1000, gpu_seconds=(50.0, 100.0, 150.0), staging_mb_per_s=(25.0, 100.0))
    costs = result["gpu_sensitivity"]
    for n in range(3):
        step_1 = costs[100.0][n] - costs[50.0][n]
        step_2 = costs[150.0][n] - costs[100.0][n]
        assert step_1 == pytest.approx(step_2) and step_1 > 0
        assert result["staging_sensitivity"][25.0][n] > result["staging_sensitivity"][100.0][n]
    rows = result["rows"]
    assert rows[1]["usd_idc_scale"] == pytest.approx(rows[1]["usd_per_series"] * 1000)
    assert rows[1]["usd_gpu_worker"] + rows[1]["usd_cpu_workers"] == pytest.approx(rows[1]["usd_per_series"])
