"""Golden outputs of torchvision's ResNets, for `crates/cv-model/tests/resnet_parity.rs`.

Regenerate by hand (CI only reads the committed JSON), from the repository root:

    CUDA_VISIBLE_DEVICES= /work/venv/bin/python crates/cv-model/tests/golden/resnet_parity.py

It writes `resnet_parity.json` next to this script. Generated with torch 2.15 / torchvision 0.29
on the CPU in float32 (the versions are recorded in the JSON).

Nothing random is involved and no weights are stored. Every parameter and buffer of tensor
name `n` (state-dict name) and shape `s` is set from its flat row-major index `i`. First an
integer hash (Wellons' lowbias32, all arithmetic mod 2**32), exact in any language:

    h = (i + 0x9E3779B9 * (len(n) + 1)) mod 2**32
    h ^= h >> 16; h *= 0x7FEB352D; h ^= h >> 15; h *= 0x846CA68B; h ^= h >> 16
    b = h / 2**31 - 1                                   (uniform-looking in [-1, 1), float64)

then, rounded once to float32:

    conv weight (4-D)   : 2 * b / sqrt(prod(s[1:]))
    fc.weight           : 2 * b / sqrt(s[1])
    fc.bias             : 0.1 * b
    BN weight           : 1 + 0.25 * b
    BN bias             : 0.1 * b
    BN running_mean     : 0.1 * b
    BN running_var      : 1 + 0.5 * |b|

(A smooth pattern such as sin(0.37 i) makes many channels nearly constant, and train-mode
BatchNorm of a nearly constant channel is so ill-conditioned that torch's own float32 and float64
results differ in the first digit.) The input of shape [N, C, H, W] is

    x[n, c, y, x] = float32((n * 131 + c * 31 + y * 7 + x * 13) % 97) / float32(96) - 0.5

For each model the JSON holds, in this order of computation on one model:
- `eval_logits`: eval mode;
- `train_logits`: train mode (batch statistics; this also updates every running statistic);
- `bn1_running_mean` / `bn1_running_var`: the stem BN's running statistics after that forward.

The expected values are computed in float64 from the float32 weights and input (the exact answer
a float32 implementation approximates); `torch_f32_error` records, per output, how far torch's
own float32 computation is from them, to judge the Rust test's errors against. Inputs are batch 2
at 64 x 64 for the ImageNet ResNets (at 32 x 32 their last stage is 1 x 1, so train-mode
BatchNorm there sees two values per channel and even torch's float32 result is off by ~1e-3)
and 32 x 32 for the CIFAR ResNet.

It also lists torchvision's state-dict names and shapes of resnet18 and resnet50
(num_classes=1000), without `num_batches_tracked`, which foldwise does not keep.
"""

import json
import math
import pathlib

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock


MASK = np.uint64(0xFFFFFFFF)


def base(name, count):
    h = (np.arange(count, dtype=np.uint64) + np.uint64(0x9E3779B9) * np.uint64(len(name) + 1)) & MASK
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x7FEB352D)) & MASK
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(0x846CA68B)) & MASK
    h ^= h >> np.uint64(16)
    return h.astype(np.float64) / 2.0**31 - 1.0


def pattern(name, shape):
    count = int(np.prod(shape))
    b = base(name, count)
    leaf = name.rsplit(".", 1)[-1]
    if name.startswith("fc."):
        v = 2.0 * b / math.sqrt(shape[1]) if leaf == "weight" else 0.1 * b
    elif leaf == "weight" and len(shape) == 4:
        v = 2.0 * b / math.sqrt(int(np.prod(shape[1:])))
    elif leaf == "weight":
        v = 1.0 + 0.25 * b
    elif leaf in ("bias", "running_mean"):
        v = 0.1 * b
    elif leaf == "running_var":
        v = 1.0 + 0.5 * np.abs(b)
    else:
        raise ValueError(name)
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def set_pattern(model):
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            t.copy_(pattern(name, tuple(t.shape)))


def make_input(n, c, h, w):
    nn_ = torch.arange(n).view(n, 1, 1, 1)
    cc = torch.arange(c).view(1, c, 1, 1)
    yy = torch.arange(h).view(1, 1, h, 1)
    xx = torch.arange(w).view(1, 1, 1, w)
    k = (nn_ * 131 + cc * 31 + yy * 7 + xx * 13) % 97
    return k.to(torch.float32) / torch.tensor(96.0, dtype=torch.float32) - 0.5


class CifarResNet(nn.Module):
    """He et al. 2016 section 4.2, option-B shortcuts, torchvision's names."""

    def __init__(self, depth, width=1, num_classes=10, in_channels=3):
        super().__init__()
        assert (depth - 2) % 6 == 0
        n = (depth - 2) // 6
        c = 16 * width
        self.conv1 = nn.Conv2d(in_channels, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.inplanes = c
        self.layer1 = self._make_layer(16 * width, n, 1)
        self.layer2 = self._make_layer(32 * width, n, 2)
        self.layer3 = self._make_layer(64 * width, n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64 * width, num_classes)

    def _make_layer(self, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def values(t):
    assert t.dtype == torch.float32
    return [float(f"{v:.9g}") for v in t.detach().flatten().tolist()]


def outputs(make, x):
    """Eval logits, train logits, then bn1's running statistics, on one fresh model."""
    model = make()
    set_pattern(model)
    if x.dtype == torch.float64:
        model.double()
    with torch.no_grad():
        model.eval()
        eval_logits = model(x)
        model.train()
        train_logits = model(x)
    return dict(
        eval_logits=eval_logits,
        train_logits=train_logits,
        bn1_running_mean=model.bn1.running_mean,
        bn1_running_var=model.bn1.running_var,
    )


def run(name, make, shape):
    x = make_input(*shape)
    exact = outputs(make, x.double())
    single = outputs(make, x)
    case = dict(model=name, input_shape=list(shape), num_classes=exact["eval_logits"].shape[1])
    for key, value in exact.items():
        case[key] = values(value.float())
    case["torch_f32_error"] = {
        key: float(f"{(single[key].double() - exact[key]).abs().max().item():.3g}")
        for key in exact
    }
    return case


def names_and_shapes(model):
    return [
        [n, list(t.shape)]
        for n, t in model.state_dict().items()
        if not n.endswith("num_batches_tracked")
    ]


def main():
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False  # plain kernels, nothing reordered
    cases = [
        run("resnet18", lambda: torchvision.models.resnet18(num_classes=10), (2, 3, 64, 64)),
        run("cifar-resnet-20", lambda: CifarResNet(20, 1, num_classes=10), (2, 3, 32, 32)),
        run("resnet50", lambda: torchvision.models.resnet50(num_classes=10), (2, 3, 64, 64)),
    ]
    out = dict(
        torch=torch.__version__,
        torchvision=torchvision.__version__,
        cases=cases,
        state_dicts=dict(
            resnet18=names_and_shapes(torchvision.models.resnet18(num_classes=1000)),
            resnet50=names_and_shapes(torchvision.models.resnet50(num_classes=1000)),
        ),
    )
    path = pathlib.Path(__file__).with_name("resnet_parity.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    for c in cases:
        print(c["model"], c["input_shape"], "torch float32 error:", c["torch_f32_error"])
    print("wrote", path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
