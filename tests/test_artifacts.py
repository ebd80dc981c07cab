"""An artifact folder's own files: what its size counts."""

from __future__ import annotations


def test_a_models_size_leaves_out_the_candidates_beside_it(tmp_path):
    from optimize.artifacts import Artifact, ArtifactKind, write_artifact_meta

    write_artifact_meta(tmp_path, ArtifactKind.ONNX, "model.onnx")
    (tmp_path / "model.onnx").write_bytes(b"x" * 100)
    candidate = tmp_path / "candidates" / "int4"
    candidate.mkdir(parents=True)
    write_artifact_meta(candidate, ArtifactKind.ONNX, "model.onnx")
    (candidate / "model.onnx").write_bytes(b"x" * 1000)
    assert Artifact.open(tmp_path, "h").size_bytes == 100
    assert Artifact.open(candidate, "h").size_bytes == 1000
