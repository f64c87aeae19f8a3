#!/usr/bin/env python3
"""Regenerate foldwise's embedded default data set, data/digits/.

Writes scikit-learn's copy of the UCI optical handwritten digits
(``sklearn.datasets.load_digits()``: 1,797 8x8 images, pixel values 0..16,
10 classes) as

* one 8-bit grayscale PNG per image at ``<label>/<index:04d>.png``, where
  index is the image's position in load_digits order and each pixel is
  ``(v * 255 + 8) // 16`` (0 -> 0, 16 -> 255);
* ``manifest.csv`` with header ``path,label`` and one row per image in
  load_digits order, paths relative to this folder.

The PNG encoder below uses only ``zlib`` and ``struct``, so the bytes depend
on the pixel values (and the zlib implementation) alone, not on Pillow's
version or its metadata choices.

Run from the repository root:

    /work/venv/bin/python data/digits/generate.py
"""

import hashlib
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

HERE = Path(__file__).resolve().parent
MANIFEST = "manifest.csv"
# Files in HERE that are not generated and must survive a rerun.
KEEP = {"generate.py", "README.md"}


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png_gray8(pixels: np.ndarray) -> bytes:
    """Encode a 2-D uint8 array as an 8-bit grayscale PNG, deterministically."""
    if pixels.dtype != np.uint8 or pixels.ndim != 2:
        raise ValueError("expected a 2-D uint8 array")
    height, width = pixels.shape
    # width, height, bit depth 8, colour type 0 (grayscale),
    # compression 0, filter method 0, no interlace.
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    # Filter type 0 (None) in front of every scanline.
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw, 9))
        + png_chunk(b"IEND", b"")
    )


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale 0..16 to 0..255 with exact integer rounding: (v*255 + 8) // 16."""
    v = image.astype(np.int64)
    if v.min() < 0 or v.max() > 16 or not np.array_equal(v, image):
        raise ValueError("expected integer pixel values in 0..16")
    return ((v * 255 + 8) // 16).astype(np.uint8)


def remove_stale() -> None:
    for entry in HERE.iterdir():
        if entry.name in KEEP or entry.name.startswith("."):
            continue
        if entry.is_dir() and entry.name.isdigit():
            shutil.rmtree(entry)
        elif entry.is_file() and entry.name == MANIFEST:
            entry.unlink()
        elif entry.name == "__pycache__":
            shutil.rmtree(entry)
        else:
            sys.exit(f"refusing to touch unexpected entry {entry}; remove it by hand")


def main() -> None:
    digits = load_digits()
    images, target = digits.images, digits.target
    if images.shape != (1797, 8, 8) or target.shape != (1797,):
        sys.exit(f"unexpected load_digits shapes {images.shape} {target.shape}")

    remove_stale()

    digest = hashlib.sha256()
    rows = ["path,label"]
    n_png = 0
    for index, (image, label) in enumerate(zip(images, target)):
        rel = f"{int(label)}/{index:04d}.png"
        data = encode_png_gray8(to_uint8(image))
        path = HERE / rel
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        digest.update(rel.encode() + b"\0" + data)
        rows.append(f"{rel},{int(label)}")
        n_png += 1

    manifest = ("\n".join(rows) + "\n").encode()
    (HERE / MANIFEST).write_bytes(manifest)
    digest.update(MANIFEST.encode() + b"\0" + manifest)

    counts = np.bincount(target, minlength=10)
    print(f"wrote {n_png} PNG files and {MANIFEST} ({n_png + 1} files) under {HERE}")
    print("class counts:", " ".join(f"{c}:{n}" for c, n in enumerate(counts)))
    print(f"sha256 over all written files: {digest.hexdigest()}")
    print(f"zlib {zlib.ZLIB_RUNTIME_VERSION}")


if __name__ == "__main__":
    main()
