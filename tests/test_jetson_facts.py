"""benchmarks/jetson_facts.py on NVIDIA's documented output formats (tests/_jetson_fixtures.py says which)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks import jetson_facts as jf
from tests import _jetson_fixtures as fx

# --------------------------------------------------------------------------- tegrastats


@pytest.mark.parametrize(("line", "watts", "source"), [
    (fx.TEGRASTATS_ORIN_NX, 9.712, "VDD_IN"),
    (fx.TEGRASTATS_XAVIER_NX, 5.120, "VDD_IN"),
    (fx.TEGRASTATS_NANO, 4.832, "POM_5V_IN"),
    (fx.TEGRASTATS_AGX_ORIN, (3203 + 400 + 3026) / 1000, "VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0"),
    (fx.TEGRASTATS_NO_RAILS, None, None),
])
def test_board_power_per_family(line, watts, source):
    sample = jf.parse_tegrastats_line(line)
    assert sample is not None
    got, src = sample.board_power()
    assert src == source
    assert got == pytest.approx(watts) if watts is not None else got is None


def test_orin_nx_rails_and_loads():
    s = jf.parse_tegrastats_line(fx.TEGRASTATS_ORIN_NX)
    assert s.rails_mw == {"VDD_IN": 9712, "VDD_CPU_GPU_CV": 4210, "VDD_SOC": 2330}  # current, not the average
    assert (s.gpu_load_percent, s.gpu_freq_mhz) == (61, 918)
    assert (s.emc_load_percent, s.emc_freq_mhz) == (17, 3199)


def test_memory_fields_are_not_rails():
    s = jf.parse_tegrastats_line(fx.TEGRASTATS_NANO)
    assert set(s.rails_mw) == {"POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"}  # not RAM 1646/3964MB, SWAP, IRAM
    assert (s.gpu_load_percent, s.gpu_freq_mhz, s.emc_load_percent) == (76, 921, 9)
    agx = jf.parse_tegrastats_line(fx.TEGRASTATS_AGX_ORIN)
    assert "NC" not in agx.rails_mw and "VDDQ_VDD2_1V8AO" in agx.rails_mw


def test_gr3d_without_frequency_and_non_sample_lines():
    s = jf.parse_tegrastats_line(fx.TEGRASTATS_NO_RAILS)
    assert (s.gpu_load_percent, s.gpu_freq_mhz) == (0, None)
    assert jf.parse_tegrastats_line("") is None
    assert jf.parse_tegrastats_line("tegrastats: permission denied") is None


def test_summary_averages_the_samples():
    other = fx.TEGRASTATS_ORIN_NX.replace("VDD_IN 9712mW", "VDD_IN 10288mW").replace("GR3D_FREQ 61%", "GR3D_FREQ 99%")
    summary = jf.summarize_tegrastats(f"{fx.TEGRASTATS_ORIN_NX}\n{other}\ngarbage")
    assert summary["samples"] == 2
    assert summary["power_w"] == pytest.approx(10.0)
    assert summary["power_source"] == "VDD_IN"
    assert summary["rails_w"]["VDD_CPU_GPU_CV"] == pytest.approx(4.21)
    assert summary["gpu_load_percent"] == pytest.approx(80.0)
    empty = jf.summarize_tegrastats("")
    assert (empty["samples"], empty["power_w"], empty["power_source"]) == (0, None, None)


def test_fps_per_watt_is_null_unless_both_measured():
    assert jf.fps_per_watt(500.0, 10.0) == pytest.approx(50.0)
    assert jf.fps_per_watt(None, 10.0) is None
    assert jf.fps_per_watt(500.0, None) is None
    assert jf.fps_per_watt(500.0, 0.0) is None


# --------------------------------------------------------------------------- nvpmodel, jetson_clocks


@pytest.mark.parametrize(("text", "name", "mode_id"), [
    (fx.NVPMODEL_ORIN, "MAXN", 0), (fx.NVPMODEL_ORIN_NANO, "15W", 0), (fx.NVPMODEL_NANO, "5W", 1),
    ("", None, None), ("NV Power Mode: MODE_30W_ALL\n", "MODE_30W_ALL", None),
])
def test_nvpmodel(text, name, mode_id):
    assert jf.parse_nvpmodel(text) == {"power_mode": name, "power_mode_id": mode_id}


def test_jetson_clocks_locked_and_not():
    locked = jf.parse_jetson_clocks(fx.JETSON_CLOCKS_LOCKED_ORIN)
    assert locked["clocks_locked"] is True
    assert locked["online_cpus"] == 2  # cpu8 is offline
    assert locked["gpu"]["MaxFreq"] == 1300500000
    default = jf.parse_jetson_clocks(fx.JETSON_CLOCKS_DEFAULT_NANO)
    assert default["clocks_locked"] is False  # GPU MinFreq < MaxFreq, EMC not overridden
    # the planted mistake: one CPU left unlocked
    one_cpu = fx.JETSON_CLOCKS_LOCKED_ORIN.replace("cpu1: Online=1 Governor=schedutil MinFreq=2201600",
                                                   "cpu1: Online=1 Governor=schedutil MinFreq=729600")
    assert jf.parse_jetson_clocks(one_cpu)["clocks_locked"] is False
    no_override = fx.JETSON_CLOCKS_LOCKED_ORIN.replace("FreqOverride=1", "FreqOverride=0")
    assert jf.parse_jetson_clocks(no_override)["clocks_locked"] is False
    assert jf.parse_jetson_clocks("")["clocks_locked"] is None  # not shown: unknown, not False


# --------------------------------------------------------------------------- the tools, run or missing


def test_off_a_jetson_there_are_no_facts(tmp_path):
    assert jf.collect_facts(release=tmp_path / "nv_tegra_release") is None


def test_missing_and_failing_tools_are_recorded_never_guessed(tmp_path):
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R36 (release), REVISION: 4.0, GCID: 1, BOARD: generic, EABI: aarch64\n")
    answers = {"nvpmodel": jf.ToolResult("ok", fx.NVPMODEL_ORIN),
               "jetson_clocks": jf.ToolResult("failed: exit 1: Error: Run jetson_clocks as ROOT")}
    facts = jf.collect_facts(run=lambda cmd: answers[cmd[0]], release=release)
    assert facts["l4t"].startswith("# R36")
    assert (facts["power_mode"], facts["power_mode_id"]) == ("MAXN", 0)
    assert facts["clocks_locked"] is None
    assert facts["tools"]["jetson_clocks"].startswith("failed")
    missing = jf.collect_facts(run=lambda cmd: jf.ToolResult("missing"), release=release)
    assert missing["tools"]["nvpmodel"] == "missing"
    assert (missing["power_mode"], missing["clocks_locked"]) == (None, None)


def test_run_tool_reports_missing_and_failed():
    assert jf.run_tool(["emonext-no-such-tool-xyz"]).status == "missing"
    assert jf.run_tool([sys.executable, "-c", "import sys; sys.exit(3)"]).status.startswith("failed: exit 3")
    assert jf.run_tool([sys.executable, "-c", "print('NV Power Mode: MAXN')"]).stdout.strip() == "NV Power Mode: MAXN"


def test_sampler_without_tegrastats_returns_none(monkeypatch):
    monkeypatch.setattr(jf.shutil, "which", lambda name: None)
    assert jf.TegrastatsSampler().stop() is None


def test_sampler_parses_a_running_tegrastats(tmp_path, monkeypatch):
    """A stand-in ``tegrastats`` on PATH printing the documented Orin NX line: the sampler's own plumbing, for real."""
    fake = tmp_path / "tegrastats"
    fake.write_text("#!/bin/sh\nwhile true; do echo '" + fx.TEGRASTATS_ORIN_NX + "'; sleep 0.02; done\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{__import__('os').environ['PATH']}")
    sampler = jf.TegrastatsSampler(interval_ms=20)
    __import__("time").sleep(0.3)
    summary = sampler.stop()
    assert summary["samples"] >= 1
    assert summary["power_w"] == pytest.approx(9.712)


# --------------------------------------------------------------------------- the latency benchmark's fields


def _latency():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import latency
    finally:
        sys.path.pop(0)
    return latency


def test_latency_rows_carry_power_and_fps_per_watt():
    from types import SimpleNamespace

    latency = _latency()
    art = latency.Artifact("trt", "/x/trt.engine", "tensorrt", "int8")
    finished = {"peak_rss_mb": 1.0, "board_power_w": 9.0, "power_w_by_config": {"1:model": 8.0}}
    worker = SimpleNamespace(art=art, description={}, finished=finished, alive=True, error=None,
                             times={(1, m): [[2.0, 2.0], [2.0, 2.0]] for m in latency.MODES})
    rows = latency.summarise([worker], "trt", {"batch_sizes": [1], "rounds": 2, "threads": 1})
    by_mode = {r["mode"]: r for r in rows}
    assert by_mode["model"]["power_w"] == 8.0
    assert by_mode["model"]["fps_per_watt"] == pytest.approx(500.0 / 8.0)  # 1 image / 2 ms = 500 images/s
    assert by_mode["end_to_end"]["power_w"] is None and by_mode["end_to_end"]["fps_per_watt"] is None
    assert all("power_w_by_config" not in r for r in rows)
    assert {"power_w", "fps_per_watt"} <= set(latency.COLUMNS)


def test_latency_machine_facts_are_null_off_a_jetson():
    machine = _latency().machine_info(1)
    if Path("/etc/nv_tegra_release").exists():
        pytest.skip("this machine is a Jetson")
    assert machine["jetson"] is None
    assert machine["power_mode"] is None and machine["clocks_locked"] is None
