"""Triton Inference Server backend: a model served at ``grpc://host:8001/emonext`` or ``http://host:8000/emonext``.

``Runtime("grpc://host:8001/emonext")`` preprocesses locally (the one preprocessing) and sends
float32 ``[N, *spec.input_shape]`` (the served model's recorded spec) to the server through ``tritonclient`` (``pip install -e '.[triton]'``;
imported only when such a URL is opened). A version can follow the model name:
``grpc://host:8001/emonext/2``. Default ports: gRPC 8001, HTTP 8000.

Labels, preprocessing spec and provenance come from the server: the model configuration's
string parameter ``emonext_metadata`` (JSON), written by ``python -m export.triton``. The input
and output names, dtype and batch limits come from the served configuration too.

Errors: an unreachable server or a model that is not ready raise
:class:`~emonext_edge.errors.BackendUnavailableError`; an unknown model or one whose
configuration is not an EmoNeXt classifier raise :class:`~emonext_edge.errors.ModelFileError`;
a request past ``timeout`` seconds raises ``BackendUnavailableError`` naming the timeout.

Thread safety: every thread gets its own client (``threading.local``), so several threads
can call :meth:`TritonBackend.run` at once; the server batches their requests.
"""

from __future__ import annotations

import http.client
import logging
import threading
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

import numpy as np

from ..errors import BackendUnavailableError, ImageError, ModelFileError
from ..formats import TRITON
from ..metadata import ArtifactMetadata, parse_json
from ..preprocess import spec_of
from .base import Backend, expected_input

log = logging.getLogger(__name__)

SCHEMES = TRITON.schemes
DEFAULT_PORTS = {"grpc": 8001, "http": 8000, "https": 443}
METADATA_PARAMETER = "emonext_metadata"
_DTYPES = {"TYPE_FP32": ("FP32", np.float32), "TYPE_FP16": ("FP16", np.float16)}


def parse_model_url(url: str) -> tuple[str, str, str, str]:
    """``grpc://host:8001/emonext/2`` -> ``("grpc", "host:8001", "emonext", "2")`` (version ``""``: the server's policy)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ModelFileError(f"{url}: unknown scheme {parts.scheme!r}; expected grpc://, http:// or https://")
    if not parts.hostname:
        raise ModelFileError(f"{url}: no host; expected {scheme}://HOST:PORT/MODEL")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise ModelFileError(f"{url}: the port is not a number") from None
    segments = [s for s in parts.path.split("/") if s]
    if not segments or len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
        raise ModelFileError(f"{url}: expected {scheme}://HOST:PORT/MODEL or .../MODEL/VERSION, e.g. {scheme}://localhost:{port}/emonext")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return scheme, f"{host}:{port}", segments[0], segments[1] if len(segments) == 2 else ""


def _first_line(exc: BaseException) -> str:
    text = (exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)) or type(exc).__name__
    return str(text).strip().splitlines()[0][:300] if str(text).strip() else type(exc).__name__


class TritonBackend(Backend):
    """A model on a Triton server. Options: ``timeout`` (seconds per request and per control call, default 30),
    ``headers`` (dict sent with every request, e.g. an auth token)."""

    name = "triton"

    def __init__(self, path: Any, *, timeout: float = 30.0, headers: Optional[dict[str, str]] = None,
                 record: Any = None) -> None:
        url = str(path)
        super().__init__(Path(url), record=record)
        self.url = url
        self.scheme, self.address, self.model, self.version = parse_model_url(url)
        if not timeout or timeout <= 0:
            raise ValueError(f"{url}: timeout must be > 0 seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self.headers = dict(headers or {})
        try:
            if self.scheme == "grpc":
                import tritonclient.grpc as client_module
            else:
                import tritonclient.http as client_module
        except ImportError:
            raise BackendUnavailableError(
                f"{url}: serving through Triton needs tritonclient (pip install -e '.[triton]', or "
                "pip install 'tritonclient[grpc,http]')"
            ) from None
        from tritonclient.utils import InferenceServerException

        self._mod = client_module
        self._error = InferenceServerException
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()

        try:
            config = self._connect()
            self._read_config(config)
        except BaseException:
            self.close()  # no client left open behind a failed construction
            raise

    # -- connection ---------------------------------------------------------------------------
    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            if self.scheme == "grpc":
                client = self._mod.InferenceServerClient(self.address)
            else:
                client = self._mod.InferenceServerClient(
                    self.address, ssl=self.scheme == "https",
                    connection_timeout=self.timeout, network_timeout=self.timeout,
                )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.scheme == "grpc":
            kwargs["client_timeout"] = self.timeout
        if self.headers:
            kwargs["headers"] = self.headers
        try:
            return fn(*args, **kwargs)
        except self._error as exc:
            text = _first_line(exc)
            if "deadline" in text.lower() or "timed out" in text.lower() or "timeout" in text.lower():
                raise BackendUnavailableError(f"{self.url}: {what} timed out after {self.timeout:g} s ({text})") from None
            raise
        except http.client.HTTPException as exc:  # HTTP: geventhttpclient's HTTPConnectionClosed, parse errors
            raise BackendUnavailableError(f"{self.url}: the Triton server at {self.address} closed the connection "
                                          f"or answered garbage during {what} ({type(exc).__name__}: "
                                          f"{_first_line(exc) or 'no response'})") from None
        except (OSError, TimeoutError) as exc:  # HTTP: socket errors, gevent timeouts
            if "timed out" in str(exc).lower() or isinstance(exc, TimeoutError):
                raise BackendUnavailableError(f"{self.url}: {what} timed out after {self.timeout:g} s") from None
            raise BackendUnavailableError(f"{self.url}: no Triton server reachable at {self.address} ({_first_line(exc)})") from None
        except BaseException as exc:  # gevent.Timeout (HTTP client) derives from BaseException
            if type(exc).__name__ == "Timeout":
                raise BackendUnavailableError(f"{self.url}: {what} timed out after {self.timeout:g} s") from None
            raise

    def _connect(self) -> dict[str, Any]:
        client = self._client()
        try:
            live = self._call("the liveness check", client.is_server_live)
        except self._error as exc:
            raise BackendUnavailableError(f"{self.url}: no Triton server reachable at {self.address} ({_first_line(exc)})") from None
        if not live:
            raise BackendUnavailableError(f"{self.url}: the Triton server at {self.address} is not live")
        try:
            if self.scheme == "grpc":
                config = self._call("reading the model configuration", client.get_model_config, self.model,
                                    self.version, as_json=True)["config"]
            else:
                config = self._call("reading the model configuration", client.get_model_config, self.model, self.version)
        except self._error as exc:
            raise self._unknown_or_unready(exc) from None
        if not self._call("the readiness check", client.is_model_ready, self.model, self.version):
            raise BackendUnavailableError(f"{self.url}: model {self.model!r} is not ready ({self._state()})")
        return dict(config)

    def _index(self) -> list[dict[str, Any]]:
        client = self._client()
        try:
            if self.scheme == "grpc":
                index = self._call("listing models", client.get_model_repository_index, as_json=True).get("models", [])
            else:
                index = self._call("listing models", client.get_model_repository_index)
        except Exception:  # noqa: BLE001  (only used to word an error message better)
            return []
        return list(index)

    def _state(self) -> str:
        rows = [m for m in self._index() if m.get("name") == self.model]
        if not rows:
            return "not in the server's repository index"
        parts = []
        for m in rows:  # a model the server knows but never loaded has no version/state in the index
            where = f"version {m['version']}: " if m.get("version") else ""
            parts.append(f"{where}{m.get('state') or 'in the repository, not loaded'} {m.get('reason', '')}".strip())
        return "; ".join(parts)

    def _unknown_or_unready(self, exc: BaseException) -> Exception:
        text = _first_line(exc)
        names = sorted({m.get("name", "") for m in self._index()} - {""})
        if self.model not in names:
            return ModelFileError(f"{self.url}: the server has no model {self.model!r} (it serves: {names or 'none'}; {text})")
        if self.version and "unknown model" in text.lower():
            return ModelFileError(f"{self.url}: the server has model {self.model!r} but not version {self.version} "
                                  f"({self._state()})")
        return BackendUnavailableError(f"{self.url}: model {self.model!r} is not available ({self._state()}; {text})")

    # -- configuration -----------------------------------------------------------------------
    def _read_config(self, config: dict[str, Any]) -> None:
        inputs, outputs = config.get("input", []), config.get("output", [])
        if len(inputs) != 1 or not outputs:
            raise ModelFileError(f"{self.url}: model {self.model!r} has {len(inputs)} inputs and {len(outputs)} outputs; "
                                 "expected the EmoNeXt classifier (1 float input [C, H, W], logits out)")
        spec, out = inputs[0], outputs[0]
        max_batch = int(config.get("max_batch_size", 0))
        dims = [int(d) for d in spec.get("dims", [])]
        dtype = spec.get("data_type", "")
        full = dims if max_batch == 0 else [-1, *dims]
        params = config.get("parameters", {}) or {}
        raw = (params.get(METADATA_PARAMETER) or {}).get("string_value")
        where = f"{self.url} (parameter {METADATA_PARAMETER})"
        data = parse_json(raw, where, "served metadata") if raw else None
        if raw and not isinstance(data, dict):
            raise ModelFileError(f"{where}: metadata must be a JSON object, got {type(data).__name__}")
        shape = spec_of(data, where).input_shape  # what the served artifact records (default: the trained spec)
        if len(full) != 4 or full[1:] != list(shape) or dtype not in _DTYPES:
            hint = " (a UINT8 image input: that is the emonext_pipeline ensemble; Runtime serves the classifier)" \
                if dtype == "TYPE_UINT8" else ""
            raise ModelFileError(f"{self.url}: model {self.model!r} takes {dtype} {dims} with max_batch_size "
                                 f"{max_batch}; expected float {list(shape)} per image (its preprocessing spec){hint}")
        self.input_shape = tuple(shape)
        self.input_name, self.output_name = spec["name"], out["name"]
        self.wire_dtype, self.input_dtype = _DTYPES[dtype]
        out_dims = [int(d) for d in out.get("dims", [])]
        if not out_dims or out_dims[-1] <= 0:
            raise ModelFileError(f"{self.url}: output {out.get('name')!r} has dims {out_dims}; expected a static class count")
        self.num_classes = out_dims[-1]
        if max_batch > 0:
            self.min_batch, self.max_batch = 1, max_batch
        elif full[0] <= 0:  # no Triton batching, a -1 batch dimension (the OpenVINO backend's form): any batch
            self.min_batch, self.max_batch = 1, None
        else:
            self.min_batch = self.max_batch = full[0]
        self.max_batch_size = max_batch
        served = {"url": self.url, "model": self.model, "version": self.version or "latest",
                  "platform": config.get("platform") or config.get("backend") or "unknown"}
        if data is not None:
            self.embedded = data
            self.metadata = ArtifactMetadata.from_dict(data, where) if data.get("labels") else None
            if self.metadata is not None:
                self.metadata.extra["triton"] = served  # where it is served (kept in its dict form)
        else:
            log.warning("%s: model %r carries no %s parameter; assuming the FER2013 ImageFolder label order",
                        self.url, self.model, METADATA_PARAMETER)
        self.served = served
        self.info.update(backend=self.name, device=f"Triton server at {self.address}", protocol=self.scheme,
                         model=self.model, version=self.version or "latest", platform=served["platform"],
                         precision=(self.metadata.precision if self.metadata and self.metadata.precision else
                                    "fp32" if self.wire_dtype == "FP32" else "fp16"),
                         provider="tritonclient", threads="server")

    # -- inference ---------------------------------------------------------------------------
    def run(self, batch: np.ndarray) -> np.ndarray:
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.input_shape:
            raise ImageError(f"{self.url}: expected a float32 {expected_input(self.input_shape)} batch, got shape {batch.shape}")
        n = batch.shape[0]
        if not self.min_batch <= n <= (self.max_batch or n):
            raise ImageError(f"{self.url}: batch of {n} outside the served model's limits [{self.min_batch}, {self.max_batch}]")
        feed = np.ascontiguousarray(batch, dtype=self.input_dtype)
        item = self._mod.InferInput(self.input_name, list(feed.shape), self.wire_dtype)
        item.set_data_from_numpy(feed)
        wanted = [self._mod.InferRequestedOutput(self.output_name)]
        client = self._client()
        try:
            result = self._call("inference", client.infer, self.model, [item], model_version=self.version, outputs=wanted)
        except self._error as exc:
            text = _first_line(exc)
            if "unknown model" in text.lower() or "not ready" in text.lower() or "unavailable" in text.lower():
                raise BackendUnavailableError(f"{self.url}: model {self.model!r} is no longer available ({text})") from None
            raise BackendUnavailableError(f"{self.url}: inference failed on the server ({text})") from None
        logits = result.as_numpy(self.output_name)
        if logits is None or logits.shape != (n, self.num_classes):
            got = None if logits is None else logits.shape
            raise BackendUnavailableError(f"{self.url}: the server returned {got} for a batch of {n}; expected ({n}, {self.num_classes})")
        return np.asarray(logits, dtype=np.float32)

    def statistics(self) -> dict[str, Any]:
        """The server's statistics for this model (``inference_count``, ``execution_count``, ...)."""
        client = self._client()
        if self.scheme == "grpc":
            stats = self._call("reading statistics", client.get_inference_statistics, self.model, self.version, as_json=True)
        else:
            stats = self._call("reading statistics", client.get_inference_statistics, self.model, self.version)
        rows = stats.get("model_stats", [])
        return dict(rows[0]) if rows else {}

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception:  # noqa: BLE001,S110  closing a half-broken channel must not mask the caller's error
                pass
        self._local = threading.local()
