"""Sentences in a text file (one per line), tokenised with the model's own tokenizer."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from optimize.data.base import ArrayDataset, DataContext, DataSourceSpec
from optimize.hashing import hash_file
from optimize.recipe.base import ExistingPath
from optimize.registries import DATA_SOURCES


def read_sentences(path) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


@DATA_SOURCES.register("text")
class TextData(DataSourceSpec):
    """Unlabelled sentences (one per line, '#' starts a comment) for embedding models; tokenised
    by the Hugging Face model's tokenizer and padded to `max_length`."""

    source: Literal["text"]
    path: ExistingPath = Field(description="UTF-8 text file, relative to the recipe")
    max_length: int = Field(128, ge=4, le=8192, description="tokens per sentence (padded / truncated)")

    labeled: ClassVar[bool] = False
    libraries: ClassVar[tuple[str, ...]] = ("transformers", "tokenizers")  # the model's tokenizer

    def load(self, context: DataContext) -> ArrayDataset:
        import torch

        sentences = read_sentences(self.path)
        if not sentences:
            raise ValueError(f"{self.path} holds no sentences")
        tokenizer = context.model_source.tokenizer()
        encoded = tokenizer(
            sentences, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        names = [spec.name for spec in context.model_source.inputs()]
        inputs = {name: encoded[name].to(torch.int64) for name in names}
        return ArrayDataset(inputs, torch.full((len(sentences),), -1, dtype=torch.int64))

    def content_fingerprint(self, context: DataContext) -> Any:
        return {"file": hash_file(self.path), "tokenizer": context.model_source.fingerprint()}
