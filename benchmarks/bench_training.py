"""Training throughput on a real ImageFolder: 5,000 32×32 RGB JPEGs (plus 1,000 for eval) made
from scikit-learn's digits with a different random affine jitter, tint and noise per image,
built once into the bench folder. TorchVision MobileNetV2 (random init, 10 classes) trains and
distils through the pipeline, each run in a fresh artifacts folder so nothing comes from the cache:

- before: how torch stages ran until issue 17: workers 0, no decoded-image cache, NCHW layout;
- after: the defaults: workers auto, cache auto (on: the folder fits the budget), channels_last auto;

then the same recipe with and without train-time augmentation, for eval accuracy at equal epochs.
Images/s count training samples over an epoch's seconds (evaluation excluded). On a CUDA host
every run uses the GPU (`training.device: auto`)."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml
from rich.table import Table

from benchmarks.common import BENCH_ARTIFACTS
from optimize.console import out

FOLDER = BENCH_ARTIFACTS / "training-data" / "digits-jpeg-v1"
TRAIN_IMAGES, EVAL_IMAGES, SIDE = 5000, 1000, 32
TIMING_EPOCHS = 2  # epoch 1 and epoch 2+ of each configuration
# Augmentation pays where a model overfits: 1,000 training images for 30 epochs (the plain run's
# train loss ends near 0.02 while its eval accuracy stalls), as a user's small folder would.
ACCURACY_EPOCHS = 30
ACCURACY_SAMPLES = 1000
SPEEDUP_TARGET = 2.0  # issue 17: second and later epochs ≥ 2× faster than before
BEFORE = {"workers": 0, "cache": "off", "channels_last": "off"}
AFTER = {"workers": "auto", "cache": "auto", "channels_last": "auto"}
AUGMENT = [
    {"RandomResizedCrop": {"size": SIDE, "scale": [0.6, 1.0]}},
    {"RandomRotation": {"degrees": 10}},
    {"ColorJitter": {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3}},
]


def jittered_digits(split: str, count: int, seed: int, root: Path) -> None:
    """`count` JPEGs from one digits split: each a digit under its own rotation, scale, shift,
    foreground / background colour and noise, so no two images are alike."""
    import numpy as np
    import torch.nn.functional as F
    from PIL import Image

    from optimize.data.digits import load_digits_arrays, split_indices

    images, labels = load_digits_arrays()
    chosen = split_indices(len(labels), split)
    digits = torch.tensor(images[chosen], dtype=torch.float32).unsqueeze(1) / 16.0
    digits = F.interpolate(digits, size=(SIDE, SIDE), mode="bilinear", align_corners=False).clamp(0, 1)
    rng = np.random.default_rng(seed)
    for index in range(count):
        source = index % len(chosen)
        angle, scale = np.deg2rad(rng.uniform(-20, 20)), rng.uniform(0.8, 1.15)
        shift = rng.uniform(-0.15, 0.15, 2)
        theta = torch.tensor(
            [
                [np.cos(angle) / scale, -np.sin(angle) / scale, shift[0]],
                [np.sin(angle) / scale, np.cos(angle) / scale, shift[1]],
            ],
            dtype=torch.float32,
        )
        grid = F.affine_grid(theta[None], [1, 1, SIDE, SIDE], align_corners=False)
        ink = F.grid_sample(digits[source : source + 1], grid, align_corners=False)[0, 0].numpy()[..., None]
        foreground, background = rng.uniform(0.4, 1.0, 3), rng.uniform(0.0, 0.6, 3)
        rgb = background * (1 - ink) + foreground * ink + rng.normal(0, 0.05, (SIDE, SIDE, 3))
        folder = root / split / str(int(labels[chosen[source]]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8)).save(folder / f"{index:05d}.jpg", quality=90)


def image_folder() -> Path:
    """The benchmark's folder, built on first use (a few seconds)."""
    done = FOLDER / "complete"
    if not done.exists():
        shutil.rmtree(FOLDER, ignore_errors=True)
        jittered_digits("train", TRAIN_IMAGES, 0, FOLDER)
        jittered_digits("test", EVAL_IMAGES, 1, FOLDER)
        done.write_text(f"{TRAIN_IMAGES} train, {EVAL_IMAGES} test\n")
    return FOLDER


def recipe(name: str, pipeline: dict, stages: list, augment: list | None = None) -> dict:
    images = {"source": "imagefolder", "resize": SIDE, "crop": SIDE}
    return {
        "name": name,
        "model": {
            "source": "torchvision:mobilenet_v2",
            "args": {"num_classes": 10},
            "input": {"name": "images", "shape": [1, 3, SIDE, SIDE]},
        },
        "data": {
            "train": {
                **images,
                "path": str(image_folder() / "train"),
                **({"augment": augment} if augment else {}),
            },
            "eval": {**images, "path": str(image_folder() / "test")},
            "workers": pipeline["workers"],
            "cache": pipeline["cache"],
        },
        "training": {"channels_last": pipeline["channels_last"]},
        "stages": stages,
        "tracking": {"enabled": False},
    }


def small(content: dict) -> dict:
    """The recipe on a seeded subset of the training images (where a model overfits)."""
    content["data"]["train"]["samples"] = ACCURACY_SAMPLES
    return content


def run_fresh(content: dict, keep_weights: Path | None = None):
    """The recipe's last step, run in a fresh artifacts folder (nothing comes from the cache);
    `keep_weights` receives the trained model's state_dict."""
    import optimize

    with tempfile.TemporaryDirectory(prefix="bench-training-") as folder:
        path = Path(folder) / "recipe.yaml"
        path.write_text(yaml.safe_dump(content, sort_keys=False))
        step = optimize.run(
            path, artifacts=Path(folder) / "artifacts", targets=[], progress=True
        ).result.steps[-1]
        seconds = ", ".join(f"{s:.1f}" for s in step.history["epoch_seconds"])
        out.print(
            f"{content['name']}: epochs {seconds} s, eval accuracy {100 * step.metrics['accuracy']:.2f}%, "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        if keep_weights is not None:
            payload = torch.load(step.artifact.file, map_location="cpu", weights_only=True)
            torch.save(payload["state_dict"], keep_weights)
        return step


TRAIN = {"train": {"epochs": TIMING_EPOCHS, "lr": 0.002, "batch_size": 64}}


def distill_step(teacher: Path) -> dict:
    return {
        "distill": {
            "epochs": TIMING_EPOCHS,
            "lr": 0.002,
            "batch_size": 64,
            "teacher_model": {
                "source": "torchvision:mobilenet_v2",
                "args": {"num_classes": 10},
                "input": {"name": "images", "shape": [1, 3, SIDE, SIDE]},
                "weights": str(teacher),
            },
        }
    }


def speed_row(table: Table, label: str, step, before=None) -> None:
    seconds = step.history["epoch_seconds"]
    later = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    rate = TRAIN_IMAGES / later
    info = step.info
    if before is None:
        target, verdict = "", ""
    else:
        speedup = statistics.median(before.history["epoch_seconds"][1:]) / later
        target = f"{speedup:.2f}× (≥ {SPEEDUP_TARGET:g}×)"
        verdict = "[green]PASS[/]" if speedup >= SPEEDUP_TARGET else "[red]FAIL[/]"
    table.add_row(
        label,
        f"{info['device']}, {info['workers']} workers, {info['cached_samples']} cached, "
        f"{'NHWC' if info['channels_last'] else 'NCHW'}",
        f"{info['train_data_load_seconds']:.1f}",
        f"{seconds[0]:.1f}",
        f"{later:.1f}",
        f"{rate:.0f}",
        target,
        verdict,
    )


def epoch_profile(images: int = 500, rounds: int = 4) -> None:
    """Where a CPU epoch goes, measured in one process with the two layouts taking turns (so a
    busy host slows both alike): JPEG decoding against reading the cache, and a training step
    (batch 64) in NCHW against NHWC."""
    import torchvision
    from torch.nn import functional

    from optimize.data.imagefolder import ImageFolderData

    spec = ImageFolderData(source="imagefolder", path=image_folder() / "train", resize=SIDE, crop=SIDE)
    decoded = spec.load(None)
    started = time.perf_counter()
    finished = [spec.finish(decoded[i][0]) for i in range(images)]
    decode_s = (time.perf_counter() - started) / images
    held = [decoded[i][0] for i in range(images)]
    started = time.perf_counter()
    for image in held:
        spec.finish(image)
    cached_s = (time.perf_counter() - started) / images

    batch = torch.stack(finished[:64])
    labels = torch.tensor([decoded.targets[i] for i in range(64)])
    steps: dict[str, list[float]] = {"NCHW": [], "NHWC": []}
    models = {}
    for layout in steps:
        torch.manual_seed(0)
        model = torchvision.models.mobilenet_v2(num_classes=10)
        if layout == "NHWC":
            model = model.to(memory_format=torch.channels_last)
        models[layout] = (model, torch.optim.AdamW(model.parameters()))

    def step(layout: str) -> float:
        model, optimizer = models[layout]
        inputs = batch.contiguous(memory_format=torch.channels_last) if layout == "NHWC" else batch
        started = time.perf_counter()
        loss = functional.cross_entropy(model(inputs), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - started

    for layout in steps:
        step(layout)  # warm-up: oneDNN picks its kernels
    for _ in range(rounds):
        for layout in steps:
            steps[layout] += [step(layout) for _ in range(5)]
    per_epoch = TRAIN_IMAGES / 64
    nchw, nhwc = (statistics.median(steps[layout]) * per_epoch for layout in steps)
    table = Table(
        title=f"Where a CPU epoch goes · {TRAIN_IMAGES:,} images, batch 64, layouts interleaved "
        f"(load average {os.getloadavg()[0]:.1f})",
        title_justify="left",
    )
    for column in ("part", "before s", "after s", "ratio"):
        table.add_column(column, justify="left" if column == "part" else "right")
    for part, before, after in (
        ("decode, resize, normalise (cache off → on)", decode_s * TRAIN_IMAGES, cached_s * TRAIN_IMAGES),
        ("train steps (NCHW → channels_last)", nchw, nhwc),
        ("epoch", decode_s * TRAIN_IMAGES + nchw, cached_s * TRAIN_IMAGES + nhwc),
    ):
        table.add_row(part, f"{before:.1f}", f"{after:.1f}", f"{before / after:.2f}×")
    out.print(table)


def main() -> None:
    image_folder()
    out.print(
        f"host: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}, "
        f"CUDA {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}"
    )
    if not torch.cuda.is_available():
        epoch_profile()
    teacher = BENCH_ARTIFACTS / "training-teacher.pt"
    train_before = run_fresh(recipe("bench-train-before", BEFORE, [TRAIN]))
    train_after = run_fresh(recipe("bench-train-after", AFTER, [TRAIN]), keep_weights=teacher)
    distill_before = run_fresh(recipe("bench-distill-before", BEFORE, [distill_step(teacher)]))
    distill_after = run_fresh(recipe("bench-distill-after", AFTER, [distill_step(teacher)]))

    table = Table(
        title=f"Training throughput · MobileNetV2 at {SIDE}×{SIDE}, {TRAIN_IMAGES:,}-image JPEG ImageFolder",
        title_justify="left",
    )
    for column in (
        "run",
        "pipeline",
        "data load s",
        "epoch 1 s",
        "epoch 2+ s",
        "images/s",
        "speedup",
        "result",
    ):
        table.add_column(column, justify="left" if column in ("run", "pipeline") else "right")
    speed_row(table, "train before", train_before)
    speed_row(table, "train after", train_after, train_before)
    speed_row(table, "distill before", distill_before)
    speed_row(table, "distill after", distill_after, distill_before)
    out.print(table)

    stages = [{"train": {"epochs": ACCURACY_EPOCHS, "lr": 0.002, "batch_size": 64}}]
    plain = run_fresh(small(recipe("bench-train-plain", AFTER, stages)))
    augmented = run_fresh(small(recipe("bench-train-augment", AFTER, stages, AUGMENT)))
    accuracy = Table(
        title=f"Augmentation · the same recipe, {ACCURACY_SAMPLES:,} training images, {ACCURACY_EPOCHS} epochs, "
        "eval accuracy",
        title_justify="left",
    )
    for column in ("data.train.augment", "final train loss", "eval accuracy", "last 5 epochs", "result"):
        accuracy.add_column(column, justify="left" if column == "data.train.augment" else "right")
    for label, step in (("none", plain), (", ".join(next(iter(s)) for s in AUGMENT), augmented)):
        better = step is augmented and step.metrics["accuracy"] > plain.metrics["accuracy"]
        accuracy.add_row(
            label,
            f"{step.metrics['final_train_loss']:.3f}",
            f"{100 * step.metrics['accuracy']:.2f}%",
            " ".join(f"{100 * a:.0f}" for a in step.history["eval_accuracy"][-5:]),
            ("[green]PASS[/]" if better else "[red]FAIL[/]") if step is augmented else "",
        )
    out.print(accuracy)
