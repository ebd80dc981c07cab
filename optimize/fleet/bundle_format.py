"""The layout and `bundle.json` of a deployment bundle: the contract between `optimize bundle`
(the build host), `optimize verify` (the node), the Kubernetes manifests and the Ansible rollout.

A bundle is one folder (and a .tar.gz of it, the folder at its top) per model version and device
class:

    <model>-<version>-<device class>/
      bundle.json                               this file's `Bundle`
      model_repository/<model>/config.pbtxt     Triton model configuration
      model_repository/<model>/<version>/...    the engine under Triton's file names
      canary/inputs.npz                         `input:<name>` arrays and `labels`, a few dozen samples
      canary/outputs.npz                        reference outputs by output name
      k8s/base/..., k8s/overlays/<device class>/...   kustomize manifests

Pure data and pydantic only: a node reads it without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from optimize.recipe.base import StrictModel

FORMAT = "optimize-bundle/1"
MANIFEST = "bundle.json"
REPOSITORY = "model_repository"
CANARY_INPUTS = "canary/inputs.npz"
CANARY_OUTPUTS = "canary/outputs.npz"
K8S = "k8s"


class TensorSpec(StrictModel):
    name: str
    dtype: str = Field(description="NumPy dtype name, e.g. float32")
    shape: list[int] = Field(description="example shape, batch first; -1 where the axis varies")


class ModelIdentity(StrictModel):
    name: str = Field(description="the Triton model name: the recipe name")
    version: int = Field(
        ge=1, description="Triton version folder: the run id's date and time, YYYYMMDDhhmmss"
    )
    run_id: str
    recipe_hash: str
    recipe_sha256: str = Field(description="the recipe file as written")
    mlflow_run_id: str | None = None
    task: Literal["classification", "embedding"]
    inputs: list[TensorSpec]
    outputs: list[str]
    eval_output: str


class RuntimeIdentity(StrictModel):
    name: str = Field(description="runtime registry name: onnxruntime, openvino, tensorrt")
    version: str = Field(description="exact library version the engine was built and measured with")
    # TensorRT classes: a plan only loads on the TensorRT version and GPU that built it
    compute_capability: str | None = None
    jetpack: str | None = None
    placeholder: bool = Field(
        False, description="true when the engine file is a stand-in (never loadable), e.g. in tests"
    )


class EngineRecord(StrictModel):
    file: str = Field(description="path of the engine file inside the bundle")
    engine_key: str
    precision: str
    max_batch_size: int = Field(ge=0, description="Triton's max_batch_size (0: no batch axis)")
    meta: dict[str, Any] = Field(
        default_factory=dict,
        description="the engine's artifact.json: what its runtime reads to open it (TensorRT: the "
        "build plan's DLA core and version compatibility, the identity of the host that built it)",
    )


class Preprocessing(StrictModel):
    layout: str | None = Field(None, description="NCHW for images, null where the input is not an image")
    mean: list[float] | None = None
    std: list[float] | None = None
    data: dict[str, Any] = Field(
        default_factory=dict, description="the eval data source as the recipe gives it"
    )


class CanaryRecord(StrictModel):
    inputs: str = CANARY_INPUTS
    outputs: str = CANARY_OUTPUTS
    samples: int = Field(ge=1)
    reference: Literal["engine", "model"] = Field(
        description="engine: the engine's own outputs on the build host; model: its ONNX model through "
        "ONNX Runtime (classes the build host cannot run)"
    )
    min_agreement_top1: float | None = Field(
        None, ge=0, le=1, description="classification: share of canary samples whose top-1 must match"
    )
    max_abs_diff: float = Field(ge=0, description="largest allowed difference of any output value")


class Bundle(StrictModel):
    format: Literal["optimize-bundle/1"] = FORMAT
    model: ModelIdentity
    device_class: dict[str, Any] = Field(description="the device class as the run used it")
    runtime: RuntimeIdentity
    engine: EngineRecord
    files: dict[str, str] = Field(description="SHA-256 of every file in the bundle but bundle.json")
    preprocessing: Preprocessing
    measured: dict[str, float] = Field(description="the run's numbers for this target (accuracy, latency)")
    gates: dict[str, float] = Field(
        default_factory=dict,
        description="the recipe's gate limits on this target (its own and the defaults it leaves in place), "
        "so the fleet's alerts hold nodes to the budgets the build was held to",
    )
    canary: CanaryRecord

    @property
    def folder_name(self) -> str:
        return folder_name(self.model.name, self.model.version, self.device_class["name"])


def folder_name(model: str, version: int, device_class: str) -> str:
    return f"{model}-{version}-{device_class}"


def read_bundle(folder: Path) -> Bundle:
    return Bundle.model_validate_json((folder / MANIFEST).read_text(encoding="utf-8"))
