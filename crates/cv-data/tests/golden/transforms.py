"""Golden outputs of torchvision's tensor transforms, for `crates/cv-data/tests/transforms.rs`.

Regenerate by hand (CI only reads the committed JSON):

    cd crates/cv-data/tests/golden
    CUDA_VISIBLE_DEVICES= /work/venv/bin/python transforms.py

It writes `transforms.json` next to this script. Generated with torch 2.15 / torchvision 0.29
(the versions are recorded in the JSON). Only deterministic functional ops are recorded: the
random transforms draw from torch's generator, which foldwise deliberately does not reproduce.

Inputs are not stored: every input is the closed-form pattern

    image[c, y, x] = float32((c * 31 + y * 7 + x * 13) % 97) / float32(96)

which the Rust test regenerates. Outputs are float32 values written with 9 significant digits,
enough to round-trip a float32 exactly.
"""

import json
import pathlib

import torch
import torchvision
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F


def pattern(c, h, w):
    cc = torch.arange(c).view(c, 1, 1)
    yy = torch.arange(h).view(1, h, 1)
    xx = torch.arange(w).view(1, 1, w)
    k = (cc * 31 + yy * 7 + xx * 13) % 97
    return k.to(torch.float32) / 96.0


def values(t):
    assert t.dtype == torch.float32
    return [float(f"{v:.9g}") for v in t.flatten().tolist()]


cases = []


def add(op, shape, out, **params):
    cases.append(
        dict(op=op, input=list(shape), **params, output_shape=list(out.shape), output=values(out))
    )


# Resize: bilinear, antialias=True. Int sizes set the shorter side; [h, w] sizes are exact.
for shape, size in [
    ((3, 13, 17), 8),  # downscale, int form (long side truncated)
    ((3, 13, 17), [5, 7]),
    ((3, 13, 17), [20, 30]),  # upscale
    ((3, 13, 17), 29),  # upscale, int form
    ((3, 13, 17), [13, 9]),  # only the width changes
    ((3, 13, 17), [7, 40]),  # down in height, up in width
    ((3, 13, 17), [13, 17]),  # same size: returned unchanged
    ((1, 40, 50), [9, 13]),  # large factors (support > 2)
    ((3, 31, 23), [11, 8]),  # odd, non-integer factors
    ((3, 31, 23), 5),  # portrait, int form
    ((1, 1, 7), [3, 2]),  # degenerate height
]:
    img = pattern(*shape)
    out = F.resize(img, size, interpolation=InterpolationMode.BILINEAR, antialias=True)
    add("resize", shape, out, size=size)

# CenterCrop, including zero padding when the crop is larger than the image.
for shape, size in [
    ((3, 13, 17), [5, 7]),
    ((3, 13, 17), 9),
    ((3, 13, 17), [6, 8]),  # even crop of odd sides: rounding of the anchor
    ((3, 13, 17), [16, 20]),  # pad both sides
    ((3, 13, 17), [15, 10]),  # pad height, crop width
    ((1, 4, 4), 7),
    ((3, 13, 17), [13, 17]),
]:
    img = pattern(*shape)
    add("center_crop", shape, F.center_crop(img, size), size=size)

# resized_crop with explicit boxes (what RandomResizedCrop does after drawing the box).
for shape, (top, left, height, width), size in [
    ((3, 13, 17), (2, 3, 9, 11), [5, 6]),
    ((3, 13, 17), (0, 0, 13, 17), [13, 17]),
    ((3, 13, 17), (4, 1, 6, 8), [12, 16]),
    ((3, 13, 17), (1, 2, 10, 10), 7),
    ((3, 13, 17), (5, 9, 8, 8), [8, 8]),  # crop only
    ((3, 31, 23), (3, 2, 27, 19), [10, 10]),
    ((1, 40, 50), (7, 11, 33, 37), [6, 9]),
]:
    img = pattern(*shape)
    out = F.resized_crop(
        img, top, left, height, width, size, interpolation=InterpolationMode.BILINEAR, antialias=True
    )
    add("resized_crop", shape, out, top=top, left=left, height=height, width=width, size=size)

# rotate: nearest, expand=False, about the centre; counter-clockwise for positive angles.
for shape, angle, fill in [
    ((3, 9, 9), 90.0, None),
    ((3, 9, 9), 180.0, None),
    ((3, 9, 9), 270.0, None),
    ((3, 9, 9), -90.0, 0.0),
    ((3, 8, 11), 90.0, None),  # non-square 90: the affine path, not a transpose
    ((3, 8, 11), 180.0, None),
    ((3, 8, 11), 30.0, None),
    ((3, 8, 11), -45.0, 0.5),
    ((3, 9, 9), 12.5, 0.25),
    ((3, 10, 12), 200.0, None),
    ((3, 13, 17), -17.0, 1.0),
    ((1, 7, 6), 60.0, 0.0),
    ((3, 9, 9), 0.0, None),
    ((3, 9, 9), 360.0, None),
]:
    img = pattern(*shape)
    out = F.rotate(img, angle, interpolation=InterpolationMode.NEAREST, expand=False, fill=fill)
    add("rotate", shape, out, angle=angle, fill=fill)

# Colour.
for shape in [(3, 5, 6), (1, 5, 6)]:
    img = pattern(*shape)
    for factor in [0.0, 0.6, 1.7]:
        add("adjust_brightness", shape, F.adjust_brightness(img, factor), factor=factor)
    for factor in [0.0, 0.3, 1.8]:
        add("adjust_contrast", shape, F.adjust_contrast(img, factor), factor=factor)
    for factor in [0.0, 0.5, 2.3]:
        add("adjust_saturation", shape, F.adjust_saturation(img, factor), factor=factor)
    for n in [1, 3]:
        add("rgb_to_grayscale", shape, F.rgb_to_grayscale(img, n), num_output_channels=n)

for shape, mean, std in [
    ((3, 5, 6), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ((1, 5, 6), [0.5], [0.25]),
]:
    img = pattern(*shape)
    add("normalize", shape, F.normalize(img, mean, std), mean=mean, std=std)

doc = dict(
    generator="crates/cv-data/tests/golden/transforms.py",
    torch=torch.__version__,
    torchvision=torchvision.__version__,
    pattern="float32((c * 31 + y * 7 + x * 13) % 97) / float32(96)",
    cases=cases,
)
path = pathlib.Path(__file__).with_name("transforms.json")
path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
print(f"{len(cases)} cases, {path.stat().st_size} bytes -> {path}")
