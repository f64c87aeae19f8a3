"""Golden values for cv-model's training maths (loss, optimizers, LR schedules, clipping, EMA).

Run by hand from the repository root, CPU only:

    CUDA_VISIBLE_DEVICES= /work/venv/bin/python crates/cv-model/tests/golden/training_math.py

It writes `training_math.json` next to itself; `tests/training_math.rs` reads it. Every input is a
closed form, `scale * sin(a * i + b) + offset` evaluated in float64 and rounded to float32, so the
Rust test regenerates the same inputs from the parameters recorded here. All tensors are float32;
LR values are float64 (Python floats), as in torch.

Recorded with torch 2.15.0 (CPU). torch's single-tensor ("for-loop") optimizer code paths are forced
(`foreach=False`) because that is the arithmetic the Rust code mirrors op for op.
"""

import json
import math
import os

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)


def wave(n, a, b, scale, offset=0.0):
    """float32 tensor [n] of offset + scale * sin(a * i + b), computed in float64 then rounded."""
    return torch.tensor(
        [offset + scale * math.sin(a * i + b) for i in range(n)], dtype=torch.float64
    ).to(torch.float32)


def wave_spec(shape, a, b, scale, offset=0.0):
    return {"shape": shape, "a": a, "b": b, "scale": scale, "offset": offset}


def from_spec(spec):
    n = math.prod(spec["shape"])
    return wave(n, spec["a"], spec["b"], spec["scale"], spec["offset"]).reshape(spec["shape"])


def floats(t):
    """Exact float32 values as Python floats (float64 holds every float32 exactly)."""
    return [float(x) for x in t.detach().reshape(-1).tolist()]


# ---------------------------------------------------------------------------------------------
# Cross-entropy
# ---------------------------------------------------------------------------------------------
N, C = 6, 5
loss_inputs = {
    "logits": wave_spec([N, C], 0.7, 0.3, 2.0),
    # Large logits check that the log-softmax is the stable one.
    "logits_large": wave_spec([N, C], 0.7, 0.3, 60.0),
    "targets": [(3 * i + 1) % C for i in range(N)],
    "class_weights": [0.5 + 0.25 * c for c in range(C)],
}
loss_cases = []
for logits_key in ["logits", "logits_large"]:
    for smoothing in [0.0, 0.1]:
        for weighted in [False, True]:
            logits = from_spec(loss_inputs[logits_key]).requires_grad_(True)
            targets = torch.tensor(loss_inputs["targets"], dtype=torch.long)
            weight = (
                torch.tensor(loss_inputs["class_weights"], dtype=torch.float32)
                if weighted
                else None
            )
            loss = torch.nn.functional.cross_entropy(
                logits, targets, weight=weight, label_smoothing=smoothing
            )
            loss.backward()
            loss_cases.append(
                {
                    "logits": logits_key,
                    "label_smoothing": smoothing,
                    "weighted": weighted,
                    "loss": float(loss.item()),
                    "grad": floats(logits.grad),
                }
            )

# ---------------------------------------------------------------------------------------------
# Optimizers: 5 steps with fixed closed-form gradients and a per-step learning rate.
# ---------------------------------------------------------------------------------------------
# (name, kind, init spec, grad a, grad b); names in sorted order, as cv-model iterates them.
PARAMS = [
    ("bn.bias", "norm", wave_spec([4], 0.9, 0.4, 0.05)),
    ("bn.running_mean", "buffer", wave_spec([4], 1.1, 0.5, 0.2)),
    ("bn.weight", "norm", wave_spec([4], 0.5, 0.3, 0.1, 1.0)),
    ("fc.bias", "bias", wave_spec([3], 1.3, 0.2, 0.1)),
    ("fc.weight", "weight", wave_spec([3, 4], 0.9, 0.1, 0.5)),
]
STEPS = 5


def grad_spec(k, t):
    """Gradient of the k-th parameter (sorted-name index) at step t (1-based)."""
    return {"a": 0.7, "b": float(t) + 0.37 * k, "scale": 0.1}


def grad_for(k, t, shape):
    g = grad_spec(k, t)
    return from_spec(wave_spec(shape, g["a"], g["b"], g["scale"]))


def lr_for(base, t):
    return base * (1.0 - 0.1 * (t - 1))


optim_cases = [
    {"name": "sgd_plain", "type": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": False,
     "weight_decay": 0.0, "decoupled_weight_decay": False, "decay_norm_and_bias": False},
    {"name": "sgd_momentum", "type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False,
     "weight_decay": 0.0, "decoupled_weight_decay": False, "decay_norm_and_bias": False},
    {"name": "sgd_nesterov", "type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
     "weight_decay": 0.0, "decoupled_weight_decay": False, "decay_norm_and_bias": False},
    {"name": "sgd_l2", "type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False,
     "weight_decay": 1e-4, "decoupled_weight_decay": False, "decay_norm_and_bias": False},
    {"name": "sgd_nesterov_l2", "type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
     "weight_decay": 0.05, "decoupled_weight_decay": False, "decay_norm_and_bias": False},
    {"name": "sgd_decoupled", "type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False,
     "weight_decay": 0.05, "decoupled_weight_decay": True, "decay_norm_and_bias": False},
    {"name": "sgd_l2_all", "type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False,
     "weight_decay": 0.05, "decoupled_weight_decay": False, "decay_norm_and_bias": True},
    {"name": "adamw", "type": "adam-w", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8,
     "weight_decay": 0.01, "decay_norm_and_bias": False},
    {"name": "adamw_all", "type": "adam-w", "lr": 0.01, "betas": [0.8, 0.99], "eps": 1e-6,
     "weight_decay": 0.5, "decay_norm_and_bias": True},
]

for case in optim_cases:
    tensors = {name: from_spec(spec).clone() for name, _, spec in PARAMS}
    params = {name: torch.nn.Parameter(tensors[name]) for name, kind, _ in PARAMS if kind != "buffer"}
    kinds = {name: kind for name, kind, _ in PARAMS}
    decayed = [p for n, p in params.items() if kinds[n] == "weight" or case["decay_norm_and_bias"]]
    others = [p for n, p in params.items() if not (kinds[n] == "weight" or case["decay_norm_and_bias"])]
    wd = case["weight_decay"]
    if case["type"] == "sgd":
        torch_wd = 0.0 if case["decoupled_weight_decay"] else wd
        opt = torch.optim.SGD(
            [{"params": decayed, "weight_decay": torch_wd}, {"params": others, "weight_decay": 0.0}],
            lr=case["lr"], momentum=case["momentum"], nesterov=case["nesterov"], dampening=0.0,
            foreach=False,
        )
    else:
        opt = torch.optim.AdamW(
            [{"params": decayed, "weight_decay": wd}, {"params": others, "weight_decay": 0.0}],
            lr=case["lr"], betas=tuple(case["betas"]), eps=case["eps"], foreach=False,
        )
    history = []
    for t in range(1, STEPS + 1):
        lr = lr_for(case["lr"], t)
        for group in opt.param_groups:
            group["lr"] = lr
        for k, (name, kind, spec) in enumerate(PARAMS):
            if kind != "buffer":
                params[name].grad = grad_for(k, t, spec["shape"])
        if case["type"] == "sgd" and case["decoupled_weight_decay"]:
            # Decoupled weight decay for SGD (not in torch.optim.SGD): p <- p * (1 - lr * wd)
            # before the plain update, exactly as AdamW orders it.
            with torch.no_grad():
                for p in decayed:
                    p.mul_(1 - lr * wd)
        opt.step()
        history.append({n: floats(p) for n, p in params.items()})
    case["history"] = history

# ---------------------------------------------------------------------------------------------
# LR schedules, per-epoch stepping over 30 epochs, base LR 0.1
# ---------------------------------------------------------------------------------------------
EPOCHS = 30
BASE_LR = 0.1
schedule_cases = [
    {"name": "constant", "config": {"type": "constant"}},
    {"name": "constant_warmup", "config": {"type": "constant", "warmup_epochs": 5, "warmup_start_factor": 0.1}},
    {"name": "step", "config": {"type": "step", "step_size": 7, "gamma": 0.1}},
    {"name": "step_warmup", "config": {"type": "step", "step_size": 7, "gamma": 0.1, "warmup_epochs": 3}},
    {"name": "multistep", "config": {"type": "multistep", "milestones": [10, 20, 25], "gamma": 0.2}},
    {"name": "multistep_warmup", "config": {"type": "multistep", "milestones": [10, 20, 25], "gamma": 0.2,
                                            "warmup_epochs": 2, "warmup_start_factor": 0.5}},
    {"name": "cosine", "config": {"type": "cosine"}},
    {"name": "cosine_short", "config": {"type": "cosine", "t_max": 10, "eta_min": 0.001}},
    {"name": "cosine_warmup", "config": {"type": "cosine", "eta_min": 1e-4, "warmup_epochs": 5,
                                         "warmup_start_factor": 0.01}},
]


def build_main(opt, cfg, warmup):
    kind = cfg["type"]
    if kind == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(opt, cfg["step_size"], cfg.get("gamma", 0.1))
    if kind == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(opt, cfg["milestones"], cfg.get("gamma", 0.1))
    if kind == "cosine":
        # The Rust default for t_max is the epochs after the warm-up.
        t_max = cfg.get("t_max", EPOCHS - warmup)
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, t_max, cfg.get("eta_min", 0.0))
    raise ValueError(kind)


for case in schedule_cases:
    cfg = case["config"]
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=BASE_LR)
    warmup = cfg.get("warmup_epochs", 0)
    if warmup > 0:
        linear = torch.optim.lr_scheduler.LinearLR(
            opt, start_factor=cfg.get("warmup_start_factor", 1.0 / 3.0), end_factor=1.0,
            total_iters=warmup,
        )
        main = build_main(opt, cfg, warmup)
        sched = torch.optim.lr_scheduler.SequentialLR(opt, [linear, main], milestones=[warmup])
    else:
        sched = build_main(opt, cfg, 0)
    lrs = []
    for epoch in range(EPOCHS):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    case["lrs"] = lrs

# ---------------------------------------------------------------------------------------------
# clip_grad_norm_
# ---------------------------------------------------------------------------------------------
clip_cases = []
for max_norm in [0.05, 0.2, 100.0]:
    grads = {}
    params = []
    for k, (name, kind, spec) in enumerate(PARAMS):
        if kind == "buffer":
            continue
        p = torch.nn.Parameter(from_spec(spec).clone())
        p.grad = grad_for(k, 1, spec["shape"])
        params.append((name, p))
    total = torch.nn.utils.clip_grad_norm_([p for _, p in params], max_norm, foreach=False)
    clip_cases.append(
        {
            "max_norm": max_norm,
            "total_norm": float(total.item()),
            "grads": {n: floats(p.grad) for n, p in params},
        }
    )

# ---------------------------------------------------------------------------------------------
# EMA: AveragedModel(multi_avg_fn=get_ema_multi_avg_fn(decay)), use_buffers True and False
# ---------------------------------------------------------------------------------------------


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = torch.nn.Module()
        self.fc = torch.nn.Module()
        for name, kind, spec in PARAMS:
            owner, leaf = name.split(".")
            value = from_spec(spec).clone()
            if kind == "buffer":
                getattr(self, owner).register_buffer(leaf, value)
            else:
                getattr(self, owner).register_parameter(leaf, torch.nn.Parameter(value))

    def named_state(self):
        return dict(list(self.named_parameters()) + list(self.named_buffers()))


def model_at(model, t):
    """Sets every variable (buffers included) to a closed form of the step t."""
    with torch.no_grad():
        for k, (name, _, spec) in enumerate(PARAMS):
            g = grad_for(k, t, spec["shape"])
            model.named_state()[name].copy_(from_spec(spec) + 2.0 * g)


ema_cases = []
for decay in [0.9]:
    for use_buffers in [True, False]:
        model = Tiny()
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=use_buffers)
        history = []
        for t in range(1, STEPS + 1):
            model_at(model, t)
            ema.update_parameters(model)
            state = dict(list(ema.module.named_parameters()) + list(ema.module.named_buffers()))
            history.append({n: floats(v) for n, v in state.items()})
        ema_cases.append({"decay": decay, "use_buffers": use_buffers, "history": history})

out = {
    "torch_version": torch.__version__,
    "loss": {"inputs": loss_inputs, "cases": loss_cases},
    "params": [{"name": n, "kind": k, "init": s} for n, k, s in PARAMS],
    "steps": STEPS,
    "grad": {"a": 0.7, "b_step": 1.0, "b_index": 0.37, "scale": 0.1,
             "doc": "grad of param k (sorted index) at step t = scale*sin(a*i + b_step*t + b_index*k)"},
    "lr_per_step": "lr * (1 - 0.1 * (t - 1)) for t = 1..steps",
    "optim": optim_cases,
    "schedule": {"epochs": EPOCHS, "base_lr": BASE_LR, "cases": schedule_cases},
    "clip": clip_cases,
    "ema": {"model_at": "value at step t = init + 2 * grad(k, t)", "cases": ema_cases},
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "training_math.json")
with open(path, "w") as f:
    json.dump(out, f, indent=None, separators=(",", ":"))
    f.write("\n")
print(f"wrote {path} ({os.path.getsize(path)} bytes)")
