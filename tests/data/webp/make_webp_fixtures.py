"""Makes the WEBP test files in this folder and the pixels OpenCV and Pillow decode from them.

Run from this folder with Debian 12's python3-opencv (OpenCV 4.6), python3-pil (Pillow 9.4) and
webp (cwebp, webpmux 1.2.4; both decoders use the same libwebp 1.2.4):
    /usr/bin/python3 make_webp_fixtures.py
"""
import os
import subprocess

import cv2
import numpy as np
from PIL import Image

W, H = 41, 27  # odd sizes: the chroma upsampling has an edge column and row


def pattern(w, h, seed, alpha):
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // (w - 1)).astype(np.uint8)
    g = (y * 255 // (h - 1)).astype(np.uint8)
    b = np.where(x + y * 2 > w, 230, 20).astype(np.uint8)  # a sharp diagonal edge
    rgb = np.stack([r, g, b], -1).astype(np.int32) + rng.randint(-24, 25, (h, w, 3))
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    if not alpha:
        return rgb
    a = np.clip(x * 300 // (w - 1) - 20, 0, 255).astype(np.uint8)  # transparent left edge
    return np.concatenate([rgb, a[..., None]], -1)


def run(*args):
    subprocess.run(args, check=True, capture_output=True)


def cv2_rgb(path):
    """OpenCV's decode (BGR or BGRA) turned to RGB or RGBA."""
    im = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    code = cv2.COLOR_BGRA2RGBA if im.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(im, code)


Image.fromarray(pattern(W, H, 1, False)).save("src_rgb.png")
Image.fromarray(pattern(W, H, 2, True)).save("src_rgba.png")
Image.fromarray(pattern(20, 14, 3, True)).save("src_frame1.png")
Image.fromarray(pattern(W, H, 4, False)).save("src_frame2.png")

run("cwebp", "-quiet", "-q", "80", "src_rgb.png", "-o", "lossy.webp")
run("cwebp", "-quiet", "-lossless", "src_rgb.png", "-o", "lossless.webp")
run("cwebp", "-quiet", "-q", "80", "src_rgba.png", "-o", "lossy_alpha.webp")
run("cwebp", "-quiet", "-lossless", "-exact", "src_rgba.png", "-o", "lossless_alpha.webp")
# An animation whose first frame (lossy with alpha) covers only part of the canvas, at an offset.
run("cwebp", "-quiet", "-q", "80", "src_frame1.png", "-o", "f1.webp")
run("cwebp", "-quiet", "-q", "80", "src_frame2.png", "-o", "f2.webp")
run("webpmux", "-frame", "f1.webp", "+100+6+4", "-frame", "f2.webp", "+100+0+0",
    "-loop", "0", "-o", "animated.webp")

for name in ["lossy", "lossless", "lossy_alpha", "lossless_alpha"]:
    ref = cv2_rgb(f"{name}.webp")
    with Image.open(f"{name}.webp") as im:
        pil = np.array(im.convert("RGBA" if ref.shape[2] == 4 else "RGB"))
    assert (pil == ref).all(), f"{name}: Pillow and OpenCV disagree"
    Image.fromarray(ref).save(f"{name}.expected.png")

# OpenCV 4.6 cannot read animations; Pillow (kohya's reader) gives the first frame composed on a
# transparent black canvas.
assert cv2.imread("animated.webp", cv2.IMREAD_UNCHANGED) is None
with Image.open("animated.webp") as im:
    assert im.n_frames == 2 and im.size == (W, H)
    im.seek(0)
    Image.fromarray(np.array(im.convert("RGBA"))).save("animated.expected.png")

for tmp in ["src_rgb.png", "src_rgba.png", "src_frame1.png", "src_frame2.png", "f1.webp", "f2.webp"]:
    os.remove(tmp)
