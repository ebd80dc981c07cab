"""The training loop shared by `train` and `distill`: device and precision (optimize.torch_device),
optimiser, schedule, early stopping on eval accuracy, restoring the best epoch, per-epoch progress
and history. The trained model leaves on the CPU, in the format every stored model has."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, PositiveInt

from optimize.recipe.training import AMP_DOC, CHANNELS_LAST_DOC, DEVICE_DOC, Device
from optimize.stages.base import StageContext, StageOutput, StageParams
from optimize.torch_device import Amp, Switch, TorchSetup, to_cpu

if TYPE_CHECKING:
    from pathlib import Path

    import torch
    from torch import nn

    from optimize.model_io import ModelIO
    from optimize.recipe.schema import Recipe


class TrainingParams(StageParams):
    epochs: PositiveInt = Field(4, le=10_000, description="passes over the training data")
    batch_size: PositiveInt = Field(64, le=65_536, description="samples per optimiser step")
    optimizer: Literal["adamw", "adam", "sgd"] = Field("adamw", description="optimiser")
    lr: float = Field(2e-3, gt=0, le=10, description="peak learning rate")
    weight_decay: float = Field(
        1e-4, ge=0, le=1, description="decoupled weight decay (adamw) or L2 (adam, sgd)"
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    schedule: Literal["cosine", "onecycle", "constant"] = Field(
        "cosine", description="learning-rate schedule"
    )
    seed: int = Field(0, description="seed for initialisation noise and shuffling")
    early_stopping_patience: PositiveInt | None = Field(
        None, description="stop after this many epochs without a better eval accuracy (needs data.eval)"
    )
    restore_best: bool = Field(True, description="keep the weights of the epoch with the best eval accuracy")
    freeze: list[str] = Field(
        default_factory=list,
        description="module names or globs (e.g. 'features.*') whose weights stay fixed: linear probing",
    )
    device: Device | None = Field(None, description=f"{DEVICE_DOC}; default: training.device")
    amp: Amp | None = Field(None, description=f"{AMP_DOC}; default: training.amp")
    channels_last: Switch | None = Field(
        None, description=f"{CHANNELS_LAST_DOC}; default: training.channels_last"
    )

    # Not in the step's cache key as written: the resolved amp is (see training_cache_extra), the
    # device and layout are not (optimize.torch_device says why).
    key_exempt: ClassVar[tuple[str, ...]] = ("device", "amp", "channels_last")

    def setup(self, context: StageContext, model: nn.Module) -> TorchSetup:
        """This step's device, precision and layout: its own fields, else the recipe's `training:`."""
        recipe = context.recipe.training
        return TorchSetup.choose(
            self.device or recipe.device,
            self.amp or recipe.amp,
            self.channels_last or recipe.channels_last,
            model,
        )


def training_problems(params: TrainingParams, recipe: Recipe, here: tuple, base_dir: Path) -> list[tuple]:
    """What a training step asks that its model or device cannot give: `freeze` globs naming no
    module, a precision the step's device (its own or the recipe's) cannot run."""
    from optimize.models.freeze import unmatched_patterns
    from optimize.stages.base import model_skeleton
    from optimize.torch_device import amp_problem

    problems = []
    amp = amp_problem(params.amp or recipe.training.amp, params.device or recipe.training.device)
    if amp:
        problems.append(((*here, "amp"), amp))
    model = model_skeleton(recipe.model, base_dir) if params.freeze else None
    if model is not None:
        problems += [
            ((*here, "freeze"), f"'{pattern}' matches no module of the model")
            for pattern in unmatched_patterns(model, params.freeze)
        ]
    return problems


def training_cache_extra(params: TrainingParams, context: StageContext) -> dict[str, Any]:
    """The precision a training step computes in, wherever the recipe set it."""
    return {"amp": params.amp or context.recipe.training.amp}


@dataclass
class FitResult:
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int | None = None
    best_accuracy: float | None = None
    epochs_run: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def stage_output(self) -> StageOutput:
        """What a training stage reports: epochs run, final loss, best epoch, per-epoch curves,
        and (for the manifest) where and how it computed."""
        metrics = {"epochs_run": float(self.epochs_run), "final_train_loss": self.history["train_loss"][-1]}
        if self.best_epoch is not None:
            metrics["best_epoch"] = float(self.best_epoch)
        return StageOutput(metrics=metrics, info=self.info, history=self.history)


def make_optimizer(params: TrainingParams, parameters) -> torch.optim.Optimizer:
    import torch

    if params.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay
        )
    if params.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=params.lr, weight_decay=params.weight_decay)
    return torch.optim.AdamW(parameters, lr=params.lr, weight_decay=params.weight_decay)


def make_scheduler(params: TrainingParams, optimizer, steps_per_epoch: int):
    import torch

    total = max(1, params.epochs * steps_per_epoch)
    if params.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=params.lr, total_steps=total)
    if params.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def accuracy(model: nn.Module, loader, io: ModelIO, setup: TorchSetup | None = None) -> float:
    """Top-1 accuracy; on `setup`'s device and precision when given (the model must be there)."""
    import torch

    setup = setup or TorchSetup("cpu")
    model.eval()
    correct = total = 0
    with torch.inference_mode(), setup.autocast():
        for inputs, labels in loader:
            predictions = io.call(model, setup.inputs(inputs)).argmax(dim=1).cpu()
            correct += int((predictions == labels).sum())
            total += len(labels)
    return correct / max(total, 1)


def fit(
    model: nn.Module,
    params: TrainingParams,
    context: StageContext,
    batch_loss: Callable[[object, object], torch.Tensor],
    setup: TorchSetup,
    extra_modules: list[nn.Module] | None = None,
) -> FitResult:
    """Train `model` (and `extra_modules`, e.g. distillation projections) on data.train, on
    `setup`'s device; `batch_loss` gets batches already there. Returns the model on the CPU."""
    import time

    import torch

    from optimize.models.freeze import freeze, hold_frozen

    torch.manual_seed(params.seed)
    extra_modules = [setup.place(module) for module in extra_modules or []]
    setup.place(model)
    frozen = freeze(model, params.freeze)
    data = context.data
    train_loader = data.loader(
        "train", params.batch_size, shuffle=True, seed=params.seed, augment=True, pin_memory=setup.pin_memory
    )
    evaluate = data.has("eval") and data.labeled("eval")
    eval_loader = data.loader("eval", 256, pin_memory=setup.pin_memory) if evaluate else None
    trainable = [p for m in [model, *extra_modules] for p in m.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError(f"freeze {params.freeze} leaves no parameter to train")
    optimizer = make_optimizer(params, trainable)
    scheduler = make_scheduler(params, optimizer, len(train_loader))
    scaler = setup.grad_scaler()

    result = FitResult(
        history={"train_loss": [], "eval_accuracy": [], "lr": [], "epoch_seconds": []},
        info={
            **setup.record(),
            "workers": data.workers("train"),
            "cached_samples": data.cached_samples("train"),
            "train_data_load_seconds": data.load_seconds["train"],
            **({"frozen": sorted(frozen)} if frozen else {}),
        },
    )
    best_state = None
    stale_epochs = 0
    for note in data.notes:
        context.progress.note(f"  {context.step_id}: {note}")
    with context.progress.task(f"{context.step_id}: epochs", params.epochs) as advance_epoch:
        for epoch in range(1, params.epochs + 1):
            started = time.perf_counter()
            for module in [model, *extra_modules]:
                module.train()
            hold_frozen(frozen)
            loss_sum, seen = 0.0, 0
            with context.progress.task(
                f"{context.step_id}: epoch {epoch}", len(train_loader)
            ) as advance_batch:
                for inputs, labels in train_loader:
                    with setup.autocast():
                        loss = batch_loss(setup.inputs(inputs), setup.inputs(labels))
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise FloatingPointError(
                            f"the loss became {value} in epoch {epoch}: the model diverged or produces "
                            "non-finite outputs; lower the lr or check the model"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    loss_sum += value * len(labels)
                    seen += len(labels)
                    advance_batch(status=f"loss {loss_sum / seen:.4f}")
            result.history["train_loss"].append(loss_sum / max(seen, 1))
            result.history["lr"].append(optimizer.param_groups[0]["lr"])
            result.history["epoch_seconds"].append(time.perf_counter() - started)  # without eval
            result.epochs_run = epoch
            status = f"loss {loss_sum / max(seen, 1):.4f}"
            if eval_loader is not None:
                score = accuracy(model, eval_loader, context.model_source.io, setup)
                result.history["eval_accuracy"].append(score)
                status += f"  eval acc {score:.4f}"
                if result.best_accuracy is None or score > result.best_accuracy:
                    result.best_accuracy, result.best_epoch, stale_epochs = score, epoch, 0
                    if params.restore_best:
                        best_state = copy.deepcopy(model.state_dict())
                else:
                    stale_epochs += 1
            advance_epoch(status=status)
            context.progress.note(f"  {context.step_id} epoch {epoch}/{params.epochs}: {status}")
            if params.early_stopping_patience and stale_epochs >= params.early_stopping_patience:
                context.progress.note(
                    f"  {context.step_id}: early stop, no better eval accuracy for {stale_epochs} epochs"
                )
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    if not result.history["eval_accuracy"]:
        del result.history["eval_accuracy"]
    for module in frozen.values():
        module.requires_grad_(True)
    for module in [model, *extra_modules]:
        to_cpu(module)
    model.eval()
    return result
