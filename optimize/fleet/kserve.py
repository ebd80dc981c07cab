"""A model served by Triton (or any KServe v2 HTTP server) as a Runner: the request and response
JSON as pure functions, and one `POST {url}/v2/models/{name}/infer` per batch with urllib (no
client library on the node). Failures carry the prober's reason."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

import numpy as np

DATATYPES = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}
DTYPES = {datatype: dtype for dtype, datatype in DATATYPES.items()}


def infer_request(feeds: Mapping[str, np.ndarray], outputs: list[str]) -> dict[str, Any]:
    """The KServe v2 inference request body for these input arrays, asking for these outputs."""
    inputs = []
    for name, value in feeds.items():
        array = np.asarray(value)
        if array.dtype.name not in DATATYPES:
            raise ValueError(
                f"input '{name}' has dtype {array.dtype.name}, which KServe v2 JSON cannot carry"
            )
        inputs.append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": DATATYPES[array.dtype.name],
                "data": array.reshape(-1).tolist(),
            }
        )
    return {"inputs": inputs, "outputs": [{"name": name} for name in outputs]}


def infer_outputs(response: Mapping[str, Any], outputs: list[str]) -> list[np.ndarray]:
    """The named outputs of a KServe v2 inference response, in the order asked, as arrays."""
    given = {tensor["name"]: tensor for tensor in response.get("outputs", [])}
    missing = [name for name in outputs if name not in given]
    if missing:
        raise ValueError(f"the server's response has no output {', '.join(map(repr, missing))}")
    arrays = []
    for name in outputs:
        tensor = given[name]
        dtype = DTYPES.get(tensor["datatype"])
        if dtype is None:
            raise ValueError(f"output '{name}' has datatype {tensor['datatype']}, not a numeric tensor")
        arrays.append(np.asarray(tensor["data"], dtype=dtype).reshape(tensor["shape"]))
    return arrays


class ProbeFailure(Exception):
    """A probe that could not run the canary: `reason` is one of REASONS."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class ServerRunner:
    """The served model as a Runner: each batch is one `POST {url}/v2/models/{name}/infer`."""

    def __init__(self, url: str, model: str, input_names: list[str], outputs: list[str], timeout: float):
        self.endpoint = f"{url.rstrip('/')}/v2/models/{model}/infer"
        self.input_names = input_names
        self.outputs = outputs
        self.timeout = timeout

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        body = json.dumps(infer_request(feeds, self.outputs)).encode()
        request = urllib.request.Request(
            self.endpoint, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                response = json.loads(answer.read())
        except urllib.error.HTTPError as exc:  # the server answered, with an error
            detail = exc.read()[:200].decode(errors="replace").strip()
            raise ProbeFailure("inference_error", f"{self.endpoint}: HTTP {exc.code} {detail}") from None
        except TimeoutError as exc:
            raise ProbeFailure("timeout", f"{self.endpoint}: no answer in {self.timeout:g} s") from exc
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                raise ProbeFailure("timeout", f"{self.endpoint}: no answer in {self.timeout:g} s") from None
            raise ProbeFailure("server_unreachable", f"{self.endpoint}: {reason}") from None
        return infer_outputs(response, self.outputs)

    def close(self) -> None:
        pass
