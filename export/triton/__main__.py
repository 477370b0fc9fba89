"""``python -m export.triton``: write a Triton model repository; ``serve`` it with the bundled server; ``env``.

    python -m export.triton --artifact emonext.onnx --output exports/triton [--max-batch 8] [--instances 1]
                            [--preprocess] [--python-backend] [--triton-release 24.08]
    python -m export.triton serve exports/triton [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002]
    python -m export.triton env            # create / locate the local server's environment

Exit codes: 0 done (``serve``: stopped by Ctrl-C / SIGTERM / ``--duration``); 2 bad input or a
configuration Triton would reject (one line, the reason; ports out of 1..65535 or given twice);
3 the local server cannot run here (its environment cannot be created, or it did not start);
4 environment failure: a port is already bound by another process (named, with its pid), disk full.

``serve`` owns its server: tritonserver and its python-backend stubs end with the ``serve``
process however it ends (SIGKILL included), and their ``/dev/shm`` regions are removed
(see :mod:`export.triton.server`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from emonext_edge.argtypes import (
    check_args,
    non_negative_int,
    port_number,
    positive_float,
    positive_int,
    thread_count,
)
from emonext_edge.cli_support import cli_entry
from emonext_edge.environment import EXIT_ENVIRONMENT

from ..driver import ExportParser
from ..pipeline import EXIT_RUNTIME_MISSING

EXIT_NO_RUNTIME = EXIT_RUNTIME_MISSING  # the exporters' exit 3: the target runtime is missing here
DEFAULT_OUTPUT = Path("exports") / "triton"


def parse_write_args(argv: Sequence[str]) -> argparse.Namespace:
    p = ExportParser(
        prog="python -m export.triton",
        description="Write a Triton Inference Server model repository from EmoNeXt artifacts. "
        "Subcommands: 'serve REPO' (local bundled server), 'env' (its environment).",
    )
    p.add_argument("--artifact", action="append", required=True, metavar="PATH",
                   help=".onnx, .xml (+ .bin) or .engine/.plan (+ manifest .json); repeat for versions 1, 2, ...")
    p.add_argument("--output", default=str(DEFAULT_OUTPUT), help=f"repository folder (default {DEFAULT_OUTPUT})")
    p.add_argument("--max-batch", type=int, default=None,
                   help="max_batch_size (default 8; 0 for .xml on the OpenVINO backend, which runs each request at its own "
                        "batch; 0 for other kinds: the model's fixed batch)")
    p.add_argument("--instances", type=int, default=1, help="instance_group count (default 1)")
    p.add_argument("--queue-delay-us", type=int, default=2000, help="dynamic batching max queue delay (default 2000)")
    p.add_argument("--kind", choices=["cpu", "gpu"],
                   help="instance kind (default: gpu for engines and ONNX Runtime, cpu for OpenVINO and --python-backend)")
    p.add_argument("--tensorrt-ep", choices=["fp32", "fp16"],
                   help="ONNX Runtime on GPU: run the model through the TensorRT execution provider at this precision "
                        "(fp16 runs the STN in FP16 too: the EP pins no layers)")
    p.add_argument("--compute-capability", metavar="X.Y",
                   help="engines: the serving GPU's compute capability, checked against the engine's manifest")
    p.add_argument("--preprocess", action="store_true",
                   help="also write emonext_preprocess, emonext_postprocess and the emonext_pipeline ensemble")
    p.add_argument("--python-backend", action="store_true",
                   help="serve the classifier with Triton's python backend running our ONNX Runtime / OpenVINO "
                   "backend (CPU hosts, and the only kind the local bundled server can serve)")
    p.add_argument("--threads", type=int, help="python backend: inference threads per instance")
    p.add_argument("--triton-release", metavar="YY.MM",
                   help="check a TensorRT engine against this Triton release: an x86_64 container (24.08) or a Jetson "
                        "build (23.09-jetpack5.1.2), see export/triton/tensorrt_releases.json")
    p.add_argument("-v", "--verbose", action="store_true", help="print every config.pbtxt")
    return p.parse_args(argv)


def write_main(argv: Sequence[str]) -> int:
    from .repository import RepositoryOptions, write_repository

    args = parse_write_args(argv)
    check_args(args, max_batch=non_negative_int, instances=positive_int, queue_delay_us=non_negative_int,
               threads=thread_count)
    options = RepositoryOptions(
        max_batch=args.max_batch, instances=args.instances, preprocess=args.preprocess,
        python_backend=args.python_backend, triton_release=args.triton_release, queue_delay_us=args.queue_delay_us,
        kind={"cpu": "KIND_CPU", "gpu": "KIND_GPU"}.get(args.kind or ""), tensorrt_ep=args.tensorrt_ep,
        compute_capability=args.compute_capability,
        backend_options={"threads": args.threads} if args.threads else {},
    )
    summary = write_repository(args.artifact, args.output, options)
    print(f"wrote {summary['repository']}: {', '.join(summary['models'])} (versions {summary['versions']}, "
          f"{summary['kind']} via {summary['serving']}, max_batch_size {summary['max_batch_size']})")
    for line in summary["warnings"]:
        print(f"warning: {line}")
    if args.verbose:
        for config in sorted(Path(args.output).glob("*/config.pbtxt")):
            print(f"--- {config}\n{config.read_text()}")
    print(f"next: {serve_hint(args.output, summary, args.python_backend, args.triton_release)}")
    return 0


def serve_hint(output: str, summary: dict, python_backend: bool, release: Optional[str]) -> str:
    """The command that serves the repository: the bundled server, a Jetson tarball, or the x86_64 container."""
    if python_backend:
        return f"python -m export.triton serve {output}"
    repo = shlex.quote(str(Path(output).resolve()))  # docker -v needs an absolute host path; $PWD/<absolute> is not one
    if release and "jetpack" in release:
        return (f"on the Jetson, with the Triton {release} tarball unpacked in /opt/tritonserver: "
                f"/opt/tritonserver/bin/tritonserver --model-repository={repo}")
    from .repository import JETSON

    if not release and summary.get("platform") == JETSON:
        return ("on the Jetson that built the engine, with a Triton Jetson build of its JetPack's TensorRT "
                f"(--triton-release lists them) unpacked in /opt/tritonserver: "
                f"/opt/tritonserver/bin/tritonserver --model-repository={repo}")
    gpus = "--gpus all " if summary.get("instance_kind", "KIND_GPU") == "KIND_GPU" else ""
    return (f"docker run {gpus}--rm -p 8000:8000 -p 8001:8001 -p 8002:8002 -v {repo}:/models "
            f"nvcr.io/nvidia/tritonserver:{release or '<YY.MM>'}-py3 tritonserver --model-repository=/models")


def serve_main(argv: Sequence[str]) -> int:
    from .repository import read_repository_configs
    from .server import PortError, PortInUseError, ServerError, TritonServer, check_ports

    p = ExportParser(prog="python -m export.triton serve",
                                description="Serve a repository with the tritonserver bundled in nvidia-pytriton "
                                "(python backend only) until Ctrl-C / SIGTERM.")
    p.add_argument("repository")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--http-port", type=port_number, default=8000)
    p.add_argument("--grpc-port", type=port_number, default=8001)
    p.add_argument("--metrics-port", type=port_number, default=8002)
    p.add_argument("--env", help="server environment (default $EMONEXT_TRITON_ENV or ~/.cache/emonext-edge/triton-env)")
    p.add_argument("--ready-timeout", type=positive_float, default=120.0, help="seconds to wait for readiness (default 120)")
    p.add_argument("--duration", type=positive_float, help="stop after this many seconds (default: run until interrupted)")
    args = p.parse_args(argv)
    try:
        check_ports([args.http_port, args.grpc_port, args.metrics_port])
    except PortError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configs = read_repository_configs(args.repository)
    if not configs:
        print(f"error: {args.repository}: no */config.pbtxt (not a model repository)", file=sys.stderr)
        return 2
    native = sorted(name for name, c in configs.items() if c.platform not in ("", "ensemble") or c.backend not in ("", "python"))
    if native:
        print(f"error: {args.repository}: {native} need Triton's C++ backends, which the bundled server lacks; "
              "write the repository with --python-backend, or serve it from NVIDIA's tritonserver container",
              file=sys.stderr)
        return 2
    server = TritonServer(Path(args.repository), env=Path(args.env) if args.env else None, host=args.host,
                          http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
                          ready_timeout=args.ready_timeout)
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)  # the terminal closed: stop the server cleanly too
    try:
        server.start()
    except PortInUseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_RUNTIME
    try:
        print(f"serving {', '.join(sorted(configs))}: {server.http_url} (HTTP), {server.grpc_url} (gRPC), "
              f"http://{args.host}:{server.metrics_port}/metrics; log {server.log_file}", flush=True)
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stop["now"] and (deadline is None or time.monotonic() < deadline):
            if server.process is None or server.process.poll() is not None:
                print(f"error: tritonserver exited:\n{server.log_tail()}", file=sys.stderr)
                return EXIT_NO_RUNTIME
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        code = server.stop()
    print(f"stopped (tritonserver exit code {code})")
    return 0


def env_main(argv: Sequence[str]) -> int:
    from .server import SERVER_REQUIREMENTS, ServerError, ensure_env, env_path

    p = ExportParser(prog="python -m export.triton env",
                                description="Create (if needed) and print the local server's environment.")
    p.add_argument("--path", help="default $EMONEXT_TRITON_ENV or ~/.cache/emonext-edge/triton-env")
    args = p.parse_args(argv)
    try:
        env = ensure_env(args.path, quiet=False)
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_RUNTIME
    print(json.dumps({"env": str(env), "requirements": list(SERVER_REQUIREMENTS),
                      "default": str(env_path(None))}, indent=2))
    return 0


@cli_entry
def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        return serve_main(argv[1:])
    if argv and argv[0] == "env":
        return env_main(argv[1:])
    return write_main(argv)


if __name__ == "__main__":
    sys.exit(main())
