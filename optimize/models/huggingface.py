"""`huggingface:<folder>`: a Hugging Face checkpoint on local disk (config, weights, tokenizer),
loaded offline. Embedding models get mean pooling (+ L2 normalisation) inside the graph, so the
exported model returns sentence embeddings the way sentence-transformers computes them.

`model.args`: max_length (128), pooling (mean | cls), normalize (true).
`package:<module>/<sub/folder>` finds a checkpoint shipped inside an installed package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from optimize.hashing import hash_file
from optimize.models.base import ModelSource
from optimize.recipe.base import resolve_user_path
from optimize.recipe.model_spec import InputSpec, ModelSpec
from optimize.registries import MODEL_SOURCES

_ARGS = {"max_length", "pooling", "normalize"}


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _embedding_module(encoder, pooling: str, normalize: bool, input_names: list[str]):
    from torch import nn

    class SentenceEmbedding(nn.Module):
        """Encoder + pooling, called positionally in `input_names` order (what ONNX export feeds)."""

        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, *inputs):
            features = dict(zip(input_names, inputs, strict=True))
            hidden = self.encoder(**features).last_hidden_state
            if pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = features["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return nn.functional.normalize(pooled, p=2, dim=1) if normalize else pooled

    return SentenceEmbedding()


def _classifier_module(model, input_names: list[str]):
    from torch import nn

    class SequenceClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(input_names, inputs, strict=True))).logits

    return SequenceClassifier()


@MODEL_SOURCES.register("huggingface")
class HuggingFaceSource(ModelSource):
    """A local Hugging Face checkpoint folder (AutoModel + its tokenizer): an encoder with pooling
    for embeddings, or a sequence classifier."""

    needs_input_spec = False
    libraries = ("torch", "transformers", "tokenizers")
    syntax = "<folder>"

    @classmethod
    def check(cls, spec: ModelSpec, base_dir: Path | None) -> str | None:
        folder = resolve_user_path(spec.reference, base_dir)
        if not (folder / "config.json").is_file():
            return f"{folder} is not a Hugging Face checkpoint folder (no config.json)"
        unknown = set(spec.args) - _ARGS
        if unknown:
            return f"model.args: unknown key '{sorted(unknown)[0]}' for huggingface: sources; valid: {', '.join(sorted(_ARGS))}"
        if spec.args.get("pooling", "mean") not in ("mean", "cls"):
            return f"model.args.pooling: '{spec.args['pooling']}' is not valid; use mean or cls"
        return None

    @property
    def folder(self) -> Path:
        return resolve_user_path(self.spec.reference, self.base_dir)

    def tokenizer(self):
        _offline()
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)

    def inputs(self) -> list[InputSpec]:
        declared = self.spec.declared_inputs()
        if declared is not None:
            return declared
        length = int(self.spec.args.get("max_length", 128))
        return [
            InputSpec(name=name, shape=[1, length], dtype="int64", dynamic_axes=[1])
            for name in self.tokenizer().model_input_names
        ]

    def output_names(self) -> list[str]:
        if self.spec.outputs is not None or "output_name" in self.spec.model_fields_set:
            return self.spec.declared_outputs()
        return ["sentence_embedding" if self.spec.task == "embedding" else "logits"]

    def build(self, pretrained: bool = True):
        _offline()
        from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

        names = [spec.name for spec in self.inputs()]
        auto = AutoModel if self.spec.task == "embedding" else AutoModelForSequenceClassification
        if pretrained:
            model = auto.from_pretrained(str(self.folder), local_files_only=True)
        else:
            model = auto.from_config(AutoConfig.from_pretrained(str(self.folder), local_files_only=True))
        model.eval()
        if self.spec.task == "embedding":
            return _embedding_module(
                model,
                self.spec.args.get("pooling", "mean"),
                bool(self.spec.args.get("normalize", True)),
                names,
            )
        return _classifier_module(model, names)

    def source_fingerprint(self) -> Any:
        """Every file at the checkpoint's top level (config, weights and all tokenizer files:
        tokenizer_config.json, special_tokens_map.json, vocab, merges, ...). Sub-folders (onnx/,
        1_Pooling/) are not what AutoModel loads."""
        return {
            "files": {path.name: hash_file(path) for path in sorted(self.folder.iterdir()) if path.is_file()}
        }
