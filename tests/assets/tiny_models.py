"""Tiny models for tests: real torch modules small enough to train in a second on 2 cores."""

from torch import nn


def tiny_cnn(num_classes: int = 10, width: int = 16, channels: int = 3) -> nn.Module:
    """Conv-BN-ReLU blocks with a residual add: enough structure for pruning and export."""

    class TinyResidualCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
            )
            self.block = nn.Sequential(
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(width, num_classes)

        def forward(self, x):
            x = self.stem(x)
            x = nn.functional.relu(x + self.block(x))
            return self.fc(self.pool(x).flatten(1))

    return TinyResidualCNN()


def tiny_mlp(num_classes: int = 10, features: int = 64, hidden: int = 32) -> nn.Module:
    """Flatten → Linear → ReLU → Linear: a model with MatMul/Gemm weights only."""
    return nn.Sequential(nn.Flatten(), nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def nan_outputs(num_classes: int = 10, channels: int = 3) -> nn.Module:
    """A numerically broken model (log of a negative number): any stage computing with it meets
    NaN, as with a user's layer that divides by zero."""
    import torch

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(channels, num_classes)
            self.offset = nn.Parameter(torch.tensor(-1.0))

        def forward(self, x):
            return self.fc(x.mean(dim=(2, 3))) * torch.log(self.offset)

    return Broken()


def tiny_transformer(num_classes: int = 10, dim: int = 32, tokens: int = 8) -> nn.Module:
    """An 8×8 image read as 8 tokens of 8 features through one attention + MLP block: its
    Linear layers on 3-D activations export as MatMul + Add, as in BERT-style transformers."""

    class TinyTransformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(tokens, dim)
            self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
            self.norm1 = nn.LayerNorm(dim)
            self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
            self.norm2 = nn.LayerNorm(dim)
            self.head = nn.Linear(dim, num_classes)

        def forward(self, x):
            x = self.embed(x.flatten(1, 2))  # (batch, 1, 8, 8) → (batch, 8 tokens, 8 features) → dim
            scores = self.query(x) @ self.key(x).transpose(1, 2) / dim**0.5
            x = self.norm1(x + scores.softmax(-1) @ self.value(x))
            x = self.norm2(x + self.mlp(x))
            return self.head(x.mean(1))

    return TinyTransformer()


def export_onnx(model, path, example_shape: tuple[int, ...]) -> None:
    """A tiny model to ONNX as the export stage writes it: input 'images' with a dynamic batch
    axis, output 'logits', opset 17."""
    import torch

    torch.onnx.export(
        model.eval(),
        (torch.randn(*example_shape),),
        str(path),
        input_names=["images"],
        output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )


def export_tiny_cnn(folder, seed: int = 0):
    """tiny_cnn(width=8) exported to folder/model.onnx (input 'images' [N,3,8,8], output
    'logits'); returns the torch model it came from."""
    import torch

    torch.manual_seed(seed)
    model = tiny_cnn(width=8).eval()
    export_onnx(model, folder / "model.onnx", (1, 3, 8, 8))
    return model
