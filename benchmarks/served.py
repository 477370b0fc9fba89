"""Served latency: client-observed latency and throughput against a Triton server, at concurrency 1/4/8.

    python benchmarks/served.py --artifact emonext.onnx [--concurrency 1,4,8] [--requests 100]
        [--protocol grpc|http] [--max-batch 8] [--instances 1] [--server-threads N] [--json out.json]
    python benchmarks/served.py --url grpc://host:8001/emonext [...]      # an already running server

Without ``--url`` the artifact is written into a python-backend repository and served by the
local bundled ``tritonserver`` (``export.triton.server``; loopback, free ports), stopped at
the end. Each of C client threads holds its own ``Runtime(url)`` and sends one preprocessed
face (batch 1) per request, back to back, ``--requests`` times (after ``--warmup`` requests):
that is what many cameras each sending a face look like to the server. Reported per
concurrency: client latency mean / p50 / p95 (ms, from request to logits in the client),
throughput (requests/s over the wall time of the level), and the server's
inference_count / execution_count of the timed requests only (its statistics read once every
client has finished its warm-up and the server has counted it, and again after the timed
requests): a ratio above 1 means dynamic batching merged requests. A local in-process row (the same artifact
through ``Runtime`` at batch 1, one thread) gives the non-served reference.

Client and server share this machine's cores: at concurrency 8 on 2 cores the clients'
own preprocessing-free request handling competes with the server for CPU. Read the numbers
as relative, and note the machine load printed beside them.

Exit codes: 0 done; 2 bad input; 3 the local server cannot run here.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics as stats
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emonext_edge import Runtime
from emonext_edge.argtypes import check_args, non_negative_int, positive_float, positive_int, thread_count
from emonext_edge.cli_support import cli_entry
from emonext_edge.preprocess import INPUT_SHAPE


def synthetic_batch(n: int, seed: int = 0) -> np.ndarray:
    """Deterministic preprocessed-looking inputs (values in [0, 1], gray repeated to 3 channels)."""
    rng = np.random.default_rng(seed)
    gray = rng.random((n, 1, *INPUT_SHAPE[1:]), dtype=np.float32)
    return np.repeat(gray, INPUT_SHAPE[0], axis=1)


def faces_from(folder: Optional[str], n: int) -> np.ndarray:
    if not folder:
        return synthetic_batch(n)
    from emonext_edge.preprocess import preprocess

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    if not files:
        raise FileNotFoundError(f"--data {folder}: no .jpg/.png images")
    return preprocess(files)


def level(url: str, concurrency: int, requests: int, warmup: int, inputs: np.ndarray, timeout: float,
          between: Optional[Callable[[], None]] = None) -> dict[str, Any]:
    """One concurrency level; ``between`` runs after every client's warm-up and before any timed request."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[BaseException] = []
    warmed = threading.Barrier(concurrency + 1)
    ready = threading.Barrier(concurrency + 1)
    done = threading.Barrier(concurrency + 1)

    def client(i: int) -> None:
        try:
            with Runtime(url, timeout=timeout) as rt:
                for k in range(warmup):
                    rt.run(inputs[(i + k) % len(inputs)][None])
                warmed.wait(120)
                ready.wait(120)
                for k in range(requests):
                    x = inputs[(i * 7 + k) % len(inputs)][None]
                    t0 = time.perf_counter()
                    rt.run(x)
                    latencies[i].append((time.perf_counter() - t0) * 1e3)
                done.wait(600)
        except BaseException as exc:  # noqa: BLE001  reported by the main thread
            errors.append(exc)
            warmed.abort()
            ready.abort()
            done.abort()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    try:
        warmed.wait(180)
        if between is not None:
            between()
        ready.wait(120)
    except threading.BrokenBarrierError:
        for t in threads:
            t.join(30)
        raise errors[0] if errors else RuntimeError("a client did not finish its warm-up") from None
    t0 = time.perf_counter()
    done.wait(900)
    wall = time.perf_counter() - t0
    for t in threads:
        t.join(30)
    if errors:
        raise errors[0]
    flat = [v for row in latencies for v in row]
    return {
        "concurrency": concurrency, "requests": len(flat), "mean_ms": stats.fmean(flat),
        "p50_ms": float(np.percentile(flat, 50)), "p95_ms": float(np.percentile(flat, 95)),
        "throughput_rps": len(flat) / wall,
    }


def server_counts(url: str) -> tuple[int, int]:
    with Runtime(url) as rt:
        s = rt.backend.statistics()  # type: ignore[union-attr]
    return int(s.get("inference_count", 0)), int(s.get("execution_count", 0))


def _append_settled(out: list[tuple[int, int]], url: str, at_least: int) -> None:
    out.append(settled_counts(url, at_least))


def settled_counts(url: str, at_least: int, wait_s: float = 10.0) -> tuple[int, int]:
    """The server's (inference_count, execution_count) once it has counted ``at_least`` inferences
    (it updates its statistics just after answering), or after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    counts = server_counts(url)
    while counts[0] < at_least and time.monotonic() < deadline:
        time.sleep(0.1)
        counts = server_counts(url)
    return counts


def local_row(artifact: str, inputs: np.ndarray, requests: int, threads: Optional[int]) -> dict[str, Any]:
    with Runtime(artifact, threads=threads) as rt:
        for k in range(5):
            rt.run(inputs[k % len(inputs)][None])
        times = []
        t_start = time.perf_counter()
        for k in range(requests):
            t0 = time.perf_counter()
            rt.run(inputs[k % len(inputs)][None])
            times.append((time.perf_counter() - t0) * 1e3)
        wall = time.perf_counter() - t_start
    return {"concurrency": "local", "requests": requests, "mean_ms": stats.fmean(times),
            "p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
            "throughput_rps": requests / wall, "inferences": None, "executions": None}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| clients | requests | mean ms | p50 ms | p95 ms | req/s | server inferences / executions |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = (f"{r['inferences']} / {r['executions']} = {r['inferences'] / r['executions']:.2f}"
                 if r.get("executions") else "—")
        lines.append(f"| {r['concurrency']} | {r['requests']} | {r['mean_ms']:.1f} | {r['p50_ms']:.1f} | "
                     f"{r['p95_ms']:.1f} | {r['throughput_rps']:.1f} | {ratio} |")
    return "\n".join(lines)


@cli_entry
def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/served.py", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--artifact", help=".onnx or .xml served by the local bundled server (python backend)")
    src.add_argument("--url", help="an already served model, grpc://host:8001/emonext or http://host:8000/emonext")
    p.add_argument("--concurrency", default="1,4,8", help="comma-separated client counts (default 1,4,8)")
    p.add_argument("--requests", type=int, default=100, help="timed requests per client (default 100)")
    p.add_argument("--warmup", type=int, default=5, help="untimed requests per client first (default 5)")
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc", help="client protocol (default grpc)")
    p.add_argument("--max-batch", type=int, default=8, help="max_batch_size of the served model (default 8)")
    p.add_argument("--instances", type=int, default=1, help="model instances in the server (default 1)")
    p.add_argument("--queue-delay-us", type=int, default=2000,
                   help="dynamic batcher's max queue delay in microseconds (default 2000)")
    p.add_argument("--server-threads", type=int, help="inference threads per server instance (default: the engine's)")
    p.add_argument("--data", help="folder of face images (default: synthetic inputs)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--json", type=Path, help="write the rows and settings here")
    args = p.parse_args(argv)
    check_args(args, requests=positive_int, warmup=non_negative_int, max_batch=non_negative_int,
               instances=positive_int, queue_delay_us=non_negative_int, server_threads=thread_count,
               timeout=positive_float)
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not levels or min(levels) < 1:
        print(f"error: --concurrency {args.concurrency!r}: expected positive integers like 1,4,8", file=sys.stderr)
        return 2
    inputs = faces_from(args.data, 32)
    server = None
    scratch: Optional[Path] = None  # the repository's temporary folder, removed at the end
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    try:
        if args.url:
            url = args.url
        else:
            from export.triton import RepositoryOptions, TritonServer, write_repository
            from export.triton.server import ServerError

            scratch = Path(tempfile.mkdtemp(prefix="served-bench-"))
            repo = scratch / "repo"
            write_repository([args.artifact], repo, RepositoryOptions(
                python_backend=True, max_batch=args.max_batch, instances=args.instances,
                queue_delay_us=args.queue_delay_us,
                backend_options={"threads": args.server_threads} if args.server_threads else {}))
            try:
                server = TritonServer(repo).start()
            except ServerError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 3
            url = f"{server.grpc_url if args.protocol == 'grpc' else server.http_url}/emonext"
            rows.append(local_row(args.artifact, inputs, args.requests, args.server_threads))
        print(f"served: {url}", flush=True)
        for c in levels:
            start = server_counts(url)
            timed_from: list[tuple[int, int]] = []  # the counts once the warm-up requests are counted
            snapshot = functools.partial(_append_settled, timed_from, url, start[0] + c * args.warmup)
            row = level(url, c, args.requests, args.warmup, inputs, args.timeout, between=snapshot)
            before = timed_from[0]
            after = settled_counts(url, before[0] + c * args.requests)
            row["inferences"], row["executions"] = after[0] - before[0], after[1] - before[1]
            rows.append(row)
            print(f"  {c} client(s): {row['mean_ms']:.1f} ms mean, {row['throughput_rps']:.1f} req/s, "
                  f"{row['inferences']} inferences in {row['executions']} executions", flush=True)
    finally:
        if server is not None:
            server.stop()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    load_after = os.getloadavg()
    print(table(rows))
    print(f"load average (1/5/15 min) before {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, "
          f"after {load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f} on {os.cpu_count()} cores; "
          "client and server share them")
    if args.json:
        args.json.write_text(json.dumps({"url": url, "settings": vars(args) | {"json": str(args.json)},
                                         "load_before": load_before, "load_after": load_after, "rows": rows},
                                        indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
