"""The built-in ResNet (`model.arch: resnet`): the CIFAR ResNet of He et al. (2016), 6*depth + 2 layers.

A 3x3 convolution to `width` channels, then three stages of `depth` residual blocks with width, 2*width and
4*width channels (the first block of stages two and three halves the image with stride 2, its shortcut a
1x1 convolution), global average pooling and a linear read-out. Each block is conv-BN-ReLU-conv-BN plus the
shortcut, then ReLU. depth=3 is ResNet-20; width=16 the paper's channel counts.

It is an ordinary torch module with PyTorch's usual initialization (He-normal convolutions, BatchNorm at
scale 1 and shift 0), built and checked like a user's network (models.seeded_module, seeded by the run's seed
alone); model.parameterization, W_std and b_std describe the layered networks only. Its eNTK goes through
the general engine (BatchNorm in eval mode: its running statistics, a fixed affine map); torch's layers have
no infinite-width rule, so a run with this network sets kernel.infinite: false.
"""
from __future__ import annotations

from torch import nn


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the input (or its 1x1-conv projection when the shape changes), ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        h = nn.functional.relu(self.bn1(self.conv1(x)))
        return nn.functional.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


def resnet(in_shape, out_dim: int, width: int, depth: int = 3) -> nn.Sequential:
    """ResNet-(6*depth+2) on images in_shape = (C, H, W) with `width` channels in its first stage."""
    if len(in_shape) != 3:
        raise ValueError(f"arch='resnet' needs image inputs (C, H, W), got in_shape={tuple(in_shape)}")
    if depth is None or depth < 1:
        raise ValueError(f"arch='resnet' needs depth >= 1 residual blocks per stage, got depth={depth!r}")
    layers: list[nn.Module] = [nn.Conv2d(in_shape[0], width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                               nn.ReLU()]
    c_in = width
    for stage, c_out in enumerate((width, 2 * width, 4 * width)):
        for block in range(depth):
            layers.append(BasicBlock(c_in, c_out, stride=2 if stage > 0 and block == 0 else 1))
            c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, out_dim)]
    net = nn.Sequential(*layers)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net
