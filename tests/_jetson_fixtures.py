"""Output of NVIDIA's Jetson tools, one sample per board family, for tests/test_jetson_facts.py.

Not captured here (no Jetson can be reached from this machine): each sample is written in the format
NVIDIA documents, with plausible values, and says which document it follows.

* tegrastats fields (RAM/SWAP/CPU/EMC_FREQ/GR3D_FREQ/rails "NAME cur/avg"): Jetson Linux Developer Guide,
  "tegrastats Utility" (L4T 32.5: https://docs.nvidia.com/jetson/archives/l4t-archived/l4t-325/
  Tegra%20Linux%20Driver%20Package%20Development%20Guide/AppendixTegraStats.html, table "Format of statistic /
  Example of statistic": "EMC_FREQ X%@Y", "GR3D_FREQ X%@Y", "RAM 220/38955MB (lfb 847x4MB)", rails "VDD_IN X/Y");
  the Jetson AGX Orin Developer Kit User Guide, "Monitor Resource Usage using tegrastats"
  (https://docs.nvidia.com/jetson/agx-orin-devkit/user-guide/latest/index.html) for the Orin line (rails in mW,
  "GR3D_FREQ X%@[MHz,MHz]", AGX Orin's rails VDD_GPU_SOC / VDD_CPU_CV / VIN_SYS_5V0).
* POM_5V_IN is the Nano's whole-board input ("POM_5V_IN measures the overall 5V input to the board, it represents
  the total power consumption", NVIDIA on https://forums.developer.nvidia.com/t/power-consumption-monitoring/73608/8,
  quoted in github.com/rbonghi/jetson_stats/issues/51).
* nvpmodel -q: "NV Power Mode: <name>" then the mode id (Jetson Linux Developer Guide, Power Management,
  "nvpmodel"; the devkit user guide's "Control Power Mode using nvpmodel").
* jetson_clocks --show: per-CPU "MinFreq/MaxFreq/CurrentFreq", "GPU MinFreq=...", "EMC ... FreqOverride="
  (Jetson Linux Developer Guide, Power Management, "jetson_clocks"; the script's --show prints these lines).
"""

# Orin NX / Orin Nano (L4T 35/36): input rail VDD_IN, CPU+GPU+CV rail VDD_CPU_GPU_CV
TEGRASTATS_ORIN_NX = (
    "12-02-2026 05:00:01 RAM 3120/15388MB (lfb 2x4MB) SWAP 0/7694MB (cached 0MB) "
    "CPU [12%@1984,9%@1984,3%@1984,5%@1984,0%@1984,0%@1984,1%@1984,0%@1984] EMC_FREQ 17%@3199 "
    "GR3D_FREQ 61%@[918,918] NVENC off NVDEC off NVJPG off VIC_FREQ 0%@115 APE 174 "
    "cpu@49.5C soc2@46.2C soc0@47.1C gpu@48.9C tj@49.5C soc1@46.8C "
    "VDD_IN 9712mW/9650mW VDD_CPU_GPU_CV 4210mW/4180mW VDD_SOC 2330mW/2320mW"
)
# AGX Orin (L4T 35): no VDD_IN; module rails
TEGRASTATS_AGX_ORIN = (
    "RAM 2448/30536MB (lfb 6634x4MB) SWAP 0/15268MB (cached 0MB) "
    "CPU [0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,off,off,off,off] EMC_FREQ 0%@2133 "
    "GR3D_FREQ 0%@[305,305] VIC_FREQ 729 APE 174 CV0@-256C CPU@45.406C Tboard@32C SOC2@42.031C "
    "Tdiode@33.25C SOC0@42.375C CV1@-256C GPU@-256C tj@45.406C SOC1@41.093C CV2@-256C "
    "VDD_GPU_SOC 3203mW/3203mW VDD_CPU_CV 400mW/400mW VIN_SYS_5V0 3026mW/3026mW NC 0mW/0mW "
    "VDDQ_VDD2_1V8AO 403mW/403mW NC 0mW/0mW"
)
# Xavier NX (L4T 32.x): rails without the mW unit, GR3D_FREQ with one frequency
TEGRASTATS_XAVIER_NX = (
    "RAM 2862/7765MB (lfb 120x4MB) SWAP 0/3883MB (cached 0MB) CPU [8%@1190,4%@1190,2%@1190,3%@1190,off,off] "
    "EMC_FREQ 4%@1600 GR3D_FREQ 27%@510 APE 150 MTS fg 0% bg 0% AO@37C GPU@38.5C PMIC@100C AUX@37C CPU@39C "
    "thermal@38.3C VDD_IN 5120/5090 VDD_CPU_GPU_CV 1310/1290 VDD_SOC 1430/1430"
)
# Nano (L4T 32.x): POM_5V_IN is the board input
TEGRASTATS_NANO = (
    "RAM 1646/3964MB (lfb 209x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
    "CPU [14%@1479,8%@1479,10%@1479,6%@1479] EMC_FREQ 9%@1600 GR3D_FREQ 76%@921 APE 25 PLL@33C CPU@35.5C "
    "PMIC@100C GPU@34C AO@41.5C thermal@34.75C POM_5V_IN 4832/4701 POM_5V_GPU 1523/1480 POM_5V_CPU 858/840"
)
# a desktop-like line: no power rail at all
TEGRASTATS_NO_RAILS = "RAM 1000/8000MB (lfb 10x4MB) CPU [1%@1200,2%@1200] EMC_FREQ 0%@1600 GR3D_FREQ 0%"

NVPMODEL_ORIN = "NV Fan Mode:quiet\nNV Power Mode: MAXN\n0\n"
NVPMODEL_ORIN_NANO = "NV Power Mode: 15W\n0\n"
NVPMODEL_NANO = "NV Power Mode: 5W\n1\n"

JETSON_CLOCKS_LOCKED_ORIN = """SOC family:tegra234  Machine:NVIDIA Jetson AGX Orin Developer Kit
Online CPUs: 0-11
cpu0: Online=1 Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
cpu1: Online=1 Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
cpu8: Online=0
GPU MinFreq=1300500000 MaxFreq=1300500000 CurrentFreq=1300500000
EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=1
FAN Dynamic Speed control=active hwmon2_pwm=255
NV Power Mode: MAXN
"""
# EMC Min < Max but FreqOverride=1 above: jetson_clocks pins the EMC with the override, not with MinFreq
JETSON_CLOCKS_DEFAULT_NANO = """SOC family:tegra210  Machine:NVIDIA Jetson Nano Developer Kit
Online CPUs: 0-3
cpu0: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1479000 CurrentFreq=1479000 IdleStates: WFI=1 c7=1
cpu1: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1479000 CurrentFreq=1479000 IdleStates: WFI=1 c7=1
GPU MinFreq=76800000 MaxFreq=921600000 CurrentFreq=76800000
EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=0
Fan: PWM=0
NV Power Mode: MAXN
"""
