"""ResNet-18 as small-image (CIFAR-style) work uses it: a 3x3 stride-2 stem and no max-pool, so the
blocks see 16x16 maps of a 32x32 input (139 M MACs, about 4x torchvision's stem at this size)."""

from torch import nn
from torchvision.models import resnet18


def resnet18_small_stem(num_classes: int = 10) -> nn.Module:
    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model
