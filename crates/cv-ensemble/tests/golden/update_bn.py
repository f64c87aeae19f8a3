"""Golden BatchNorm statistics of `torch.optim.swa_utils.update_bn`, for
`crates/cv-ensemble/tests/average.rs`.

Regenerate by hand (CI only reads the committed JSON), from the repository root:

    CUDA_VISIBLE_DEVICES= /work/venv/bin/python crates/cv-ensemble/tests/golden/update_bn.py

It writes `update_bn.json` next to this script (torch's version is recorded in it).

The network, its closed-form weights and the closed-form input are those of
`crates/cv-model/tests/golden/resnet_parity.py` (imported from there; see its docstring): a CIFAR
ResNet of depth 8 (one BasicBlock per stage, option-B shortcuts), 3 input channels, 3 classes,
every parameter and buffer set by `set_pattern`. The input is `make_input(10, 3, 8, 8)` cut into
three batches of different sizes: images 0-1, 2-4 and 5-9.

`update_bn` resets every running mean to 0 and running variance to 1 and runs one train-mode pass
with momentum None (a cumulative average of the per-batch statistics, unbiased variance). The
JSON holds every BatchNorm's running statistics afterwards, computed in float64 from the float32
weights and input (the exact answer a float32 implementation approximates), and in
`torch_f32_error` the largest distance of torch's own float32 result from them.
"""

import json
import pathlib
import sys

import torch
from torch.optim.swa_utils import update_bn

ROOT = pathlib.Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "crates" / "cv-model" / "tests" / "golden"))
from resnet_parity import CifarResNet, make_input, set_pattern, values  # noqa: E402

BATCHES = [(0, 2), (2, 5), (5, 10)]


def statistics(dtype):
    model = CifarResNet(8, 1, num_classes=3)
    set_pattern(model)
    model.to(dtype)
    x = make_input(10, 3, 8, 8).to(dtype)
    loader = [x[a:b] for a, b in BATCHES]
    with torch.no_grad():
        update_bn(loader, model)
    return {
        name: t
        for name, t in model.state_dict().items()
        if name.endswith("running_mean") or name.endswith("running_var")
    }


def main():
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False  # plain kernels, nothing reordered
    exact = statistics(torch.float64)
    single = statistics(torch.float32)
    error = max((single[n].double() - exact[n]).abs().max().item() for n in exact)
    out = dict(
        torch=torch.__version__,
        model="cifar-resnet-8",
        num_classes=3,
        input_shape=[10, 3, 8, 8],
        batches=[list(b) for b in BATCHES],
        running=[[name, values(t.float())] for name, t in exact.items()],
        torch_f32_error=float(f"{error:.3g}"),
    )
    path = pathlib.Path(__file__).with_name("update_bn.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print("torch float32 error:", out["torch_f32_error"])
    print("wrote", path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
