"""Detects models whose weights went NaN or infinite (a diverged training, a bad quantizer)."""

from __future__ import annotations

from optimize.artifacts import Artifact, ArtifactKind


def non_finite_tensors(artifact: Artifact) -> list[str]:
    """Names of weight tensors holding NaN or ±inf."""
    if artifact.kind == ArtifactKind.TORCH:
        import torch

        payload = torch.load(artifact.file, map_location="cpu", weights_only=True)
        return [
            name
            for name, tensor in payload["state_dict"].items()
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
        ]
    if artifact.kind == ArtifactKind.ONNX:
        import numpy as np
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(artifact.file))
        bad = []
        for initializer in model.graph.initializer:
            values = numpy_helper.to_array(initializer)
            if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
                bad.append(initializer.name)
        return bad
    return []
