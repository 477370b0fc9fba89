"""benchmarks/latency.py, the reports: accuracy join, Markdown/CSV/JSON, plots, the --served rows."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

from benchmarks.latency_common import (
    BASELINE,
    OTHER_CORES_WARN,
    Artifact,
    BadInput,
    progress,
)

# --------------------------------------------------------------------------- reporting


def choose_baseline(artifacts: list[Artifact]) -> str:
    """PyTorch eager FP32 when present (the default run), else the first PyTorch artifact, else the first one."""
    names = [a.name for a in artifacts]
    if BASELINE in names:
        return BASELINE
    return next((a.name for a in artifacts if a.backend == "torch"), names[0])


def read_accuracy(path: Path) -> dict[str, float]:
    """``{resolved model path: accuracy}`` from a ``benchmarks/accuracy.py --json`` file, or ``BadInput``."""
    try:
        report = json.loads(Path(path).read_text())
        results = report["results"]
        return {str(Path(r["model"]).resolve()): float(r["accuracy"]) for r in results}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"--accuracy {path}: not a benchmarks/accuracy.py --json file "
                       f"(expected JSON with results[].model and results[].accuracy; {type(exc).__name__})") from None


def add_accuracy(rows: list[dict[str, Any]], accuracy: Optional[dict[str, float]], untrained: bool) -> None:
    if accuracy is None:
        return
    if untrained:
        progress("--accuracy ignored: the default model is untrained, its accuracy means nothing")
        return
    for r in rows:
        r["accuracy"] = accuracy.get(str(Path(r["path"]).resolve()))


COLUMNS = ["artifact", "backend", "device", "precision", "inference_precision", "threads", "batch", "compiled_batch",
           "mode", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "min_ms", "images_per_s", "ratio_to_baseline",
           "ratio_min", "ratio_max", "speedup_vs_baseline", "peak_rss_mb", "device_memory_mb", "board_power_w",
           "power_w", "fps_per_watt", "accuracy", "error"]


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def protocol_text(settings: dict[str, Any]) -> str:
    return (f"{settings['rounds']} interleaved rounds (order rotated each round), each with 1 untimed + "
            f"{settings['iterations']} timed calls per artifact, batch size and mode, after "
            f"{settings['warmup']} warm-up calls; one persistent process per artifact; "
            f"ratio = artifact's median / {settings['baseline']}'s median in the same round, "
            f"reported as median [min–max] over rounds")


def header_text(report: dict[str, Any]) -> str:
    m, s, load = report["machine"], report["settings"], report["load"]
    others = [r["other_cores"] for r in load["rounds"] if r.get("other_cores") is not None]
    load_line = (f"other processes used {max(others):.2f} cores at most during the rounds (median "
                 f"{statistics.median(others):.2f})" if others else "load not measured (no /proc/stat)")
    lines = [
        f"Model: {report['model']['name']}. Run: {report['created']}.",
        (f"Machine: {m['cpu']} ({m['cores']} cores, {s['threads']} threads per engine), "
         f"flags: {', '.join(m['cpu_flags']) or '-'}; {m['os']}."),
        f"Protocol: {protocol_text(s)}.",
        f"Load: {load_line}." + ("".join(f"\nWarning: {w}." for w in load["warnings"])),
    ]
    return "\n".join(lines)


def markdown_table(rows: list[dict[str, Any]], untrained: bool) -> str:
    cols = ["artifact", "precision", "inference_precision", "batch", "compiled_batch", "mode", "p50_ms", "mean_ms",
            "p90_ms", "images_per_s", "ratio", "ratio range", "peak_rss_mb", "accuracy"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['artifact']} | {r.get('precision', '')} | | {r.get('batch', '')} | | "
                         f"{r.get('mode', '')} | error: {r['error']} |")
            continue
        ratio = r.get("ratio_to_baseline")
        spread = f"{r['ratio_min']:.3f}–{r['ratio_max']:.3f}" if ratio is not None else ""
        values = {**r, "ratio": ratio, "ratio range": spread}
        lines.append("| " + " | ".join(_fmt(values.get(c)) for c in cols) + " |")
    if untrained:
        lines.append("\nModel: EmoNeXt-Tiny with seeded random weights (**untrained**): latency only, no accuracy.")
    return "\n".join(lines)


def prepare_out_dir(out: Path) -> Path:
    """Create ``out`` and prove a file can be written there, before any work (``BadInput`` otherwise)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise BadInput(f"--out {out}: cannot write results there ({exc.strerror or exc})") from None
    return out


def served_rows(artifact: str, requests: int, threads: int, out: Path, timeout: float) -> dict[str, Any]:
    """The served row: ``benchmarks/served.py`` in its own process (it starts and stops the local
    Triton server); its JSON lands in ``out/served.json``. A server that cannot start here is
    recorded as such, not fatal to the rest of the run."""
    cmd = [sys.executable, str(Path(__file__).with_name("served.py")), "--artifact", str(artifact),
           "--requests", str(requests), "--server-threads", str(threads), "--json", str(out / "served.json")]
    progress("served: " + " ".join(cmd[1:]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"benchmarks/served.py took more than {timeout:.0f} s"}
    if proc.returncode != 0 or not (out / "served.json").is_file():
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"benchmarks/served.py exit {proc.returncode}: {last}"}
    return json.loads((out / "served.json").read_text())


def served_table(served: dict[str, Any]) -> str:
    if "error" in served:
        return f"Served (Triton): not measured: {served['error']}"
    lines = [f"Served (Triton, {served['url']}; client and server share this machine's cores):", "",
             "| clients | mean ms | p95 ms | req/s | server inferences / executions |", "|---|---:|---:|---:|---:|"]
    for r in served["rows"]:
        ratio = f"{r['inferences']} / {r['executions']}" if r.get("executions") else "—"
        lines.append(f"| {r['concurrency']} | {r['mean_ms']:.1f} | {r['p95_ms']:.1f} | {r['throughput_rps']:.1f} | {ratio} |")
    return "\n".join(lines)


def write_outputs(out: Path, report: dict[str, Any]) -> None:
    (out / "results.json").write_text(json.dumps(report, indent=2))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(report["rows"])
    text = header_text(report) + "\n\n" + markdown_table(report["rows"], report["model"]["untrained"])
    if "served" in report:
        text += "\n\n" + served_table(report["served"])
    (out / "results.md").write_text(text + "\n")
    print(text)
    _plots(out, report)


def _plots(out: Path, report: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        progress("matplotlib not installed: no plots")
        return
    rows = report["rows"]
    ok = [r for r in rows if r.get("ratio_to_baseline") is not None and r.get("mode") == "model"]
    if not ok:
        return
    batches = sorted({r["batch"] for r in ok})
    fig, axes = plt.subplots(1, len(batches), figsize=(7.5 * len(batches), 0.45 * len(ok) / len(batches) + 2.8),
                             squeeze=False)
    s, m = report["settings"], report["machine"]
    for ax, b in zip(axes[0], batches):
        sel = [r for r in ok if r["batch"] == b][::-1]
        ratios = [r["ratio_to_baseline"] for r in sel]
        err = [[r["ratio_to_baseline"] - r["ratio_min"] for r in sel], [r["ratio_max"] - r["ratio_to_baseline"] for r in sel]]
        ax.barh([f"{r['artifact']} ({r['precision']})" for r in sel], ratios, xerr=err, capsize=3, color="#4c72b0")
        for y, r in enumerate(sel):
            ax.text(r["ratio_max"] + 0.02, y, f"{r['ratio_to_baseline']:.3f}×  ({r['p50_ms']:.1f} ms)",
                    va="center", fontsize=8)
        ax.axvline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xlim(0, max(r["ratio_max"] for r in sel) * 1.75)
        ax.set_xlabel(f"latency / baseline (median of {s['rounds']} rounds, whisker min–max)")
        ax.set_title(f"batch {b}, model only")
    others = [r["other_cores"] for r in report["load"]["rounds"] if r.get("other_cores") is not None]
    load = (f"\nother processes used up to {max(others):.2f} cores: ratios unreliable" if others and
            max(others) > OTHER_CORES_WARN else "")
    fig.suptitle(f"{report['model']['name']}; baseline {s['baseline']}\n{m['cpu']}, {s['threads']} threads, "
                 f"{s['rounds']} interleaved rounds, {report['created'][:10]}{load}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)
    acc = [r for r in ok if r.get("accuracy") is not None and r["batch"] == batches[0]]
    if acc:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in acc:
            ax.scatter(r["ratio_to_baseline"], r["accuracy"])
            ax.annotate(f"{r['artifact']} {r['ratio_to_baseline']:.2f}×", (r["ratio_to_baseline"], r["accuracy"]),
                        fontsize=8)
        ax.set_xlabel(f"latency ratio to {s['baseline']} (batch {batches[0]})")
        ax.set_ylabel("top-1 accuracy")
        ax.set_title(report["model"]["name"], fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "latency_vs_accuracy.png", dpi=110)
        plt.close(fig)
