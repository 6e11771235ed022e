"""Hostile inputs to the tracker: bad initial boxes, odd image formats and sizes, bad checkpoints.

Every case either works (images are converted, odd sizes tracked) or raises a clear error naming
what is wrong (and the file, for checkpoints); none crashes deep inside torch or OpenCV.
``TRACKER_HOSTILE_INPUTS`` lists the cases (docs/reliability.md counts them).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pulkit.core.config import ModelConfig
from pulkit.data.images import ImageError
from pulkit.method.loop import save_training_checkpoint
from pulkit.models.net import build_net, load_checkpoint, save_checkpoint
from pulkit.tracking.siamfc import SiamFCTracker

# Every hostile tracker input tested here and what the tracker does about it.
TRACKER_HOSTILE_INPUTS: list[tuple[str, str]] = [
    ("initial box outside the image (right, below, left, above)", "ValueError naming the box and image size"),
    ("initial box of zero or negative width / height", "ValueError: positive width and height"),
    ("initial box with NaN / inf", "ValueError: non-finite values"),
    ("initial box of the wrong length or not numeric", "ValueError: 4 numbers [x, y, w, h]"),
    ("grayscale H x W and H x W x 1 arrays", "converted to RGB, same boxes as the RGB frame"),
    ("RGBA arrays and PIL RGBA / P / L images", "converted, same boxes as the RGB frame"),
    ("16-bit arrays and PIL I;16 images", "scaled by 255 / 65535, same boxes as the 8-bit frame"),
    ("float images in [0, 1] or [0, 255]", "converted, same boxes as the 8-bit frame"),
    ("1 x 1, one-pixel-wide and one-pixel-tall images", "tracked: finite boxes, centre inside the frame"),
    ("a frame of another size mid-sequence (smaller, larger, 1 x 1)", "tracked: centre kept inside the new frame"),
    ("empty frame, a frame of 2 channels, or no image at all (None, str)", "ImageError saying what it got"),
    ("checkpoint whose weights are another architecture's", "ValueError naming the file and both architectures"),
    ("checkpoint naming an unknown backbone", "ValueError naming the file, the backbone and what the weights fit"),
    ("checkpoint whose head weights do not fit its arch (head_bias)", "ValueError naming the file and the head keys"),
    ("BD embedder checkpoint (no Siamese net) given to the tracker", "ValueError naming the file and its stage"),
    ("checkpoint arch lacking entries", "ValueError naming the file and the missing entries"),
    ("truncated, empty or garbage checkpoint file", "ValueError naming the file"),
    ("checkpoint with corrupted bytes inside a record (bit rot)", "ValueError naming the file: CRC check failed"),
    ("a torch file that is not a pulkit checkpoint; a missing file", "ValueError / FileNotFoundError naming it"),
]

MODEL = ModelConfig(backbone="alexnet", exemplar_sz=95, instance_sz=127)   # small crops: fast on CPU
BOX = [30, 20, 20, 16]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_net(MODEL)


@pytest.fixture(scope="module")
def img():
    """A textured 96 x 72 RGB frame: a smooth background with a bright square (the target)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:72, 0:96]
    base = np.stack([xx * 2, yy * 3, (xx + yy)], axis=2) % 256
    out = (base + rng.integers(0, 30, base.shape)).clip(0, 255).astype(np.uint8)
    out[20:36, 30:50] = [230, 60, 40]
    return out


def track(net, frames, box=BOX):
    t = SiamFCTracker(net, device="cpu")
    t.init(frames[0], box)
    return np.array([t.update(f) for f in frames[1:]])


# --------------------------------------------------------------------------- initial boxes
@pytest.mark.parametrize("box, match", [
    ([200, 10, 10, 10], "lies outside the 96 x 72 image"),
    ([10, 72, 10, 10], "lies outside"),
    ([-20, 10, 10, 10], "lies outside"),
    ([10, -10, 10, 10], "lies outside"),
    ([10, 10, 0, 10], "positive width and height"),
    ([10, 10, 10, 0], "positive width and height"),
    ([10, 10, -5, 10], "positive width and height"),
    ([10, 10, np.nan, 10], "non-finite"),
    ([np.inf, 10, 10, 10], "non-finite"),
    ([10, 10, 5], "4 numbers"),
    ([[1, 2, 3, 4], [1, 2, 3, 4]], "4 numbers"),
    ("abcd", "4 numbers"),
    (None, "4 numbers"),
])
def test_bad_initial_box_is_a_clear_value_error(net, img, box, match):
    with pytest.raises(ValueError, match=match):
        SiamFCTracker(net, device="cpu").init(img, box)


# --------------------------------------------------------------------------- image formats
FORMATS = {
    "gray HxW": (lambda im: im[..., 0], lambda im: np.repeat(im[..., :1], 3, axis=2)),
    "gray HxWx1": (lambda im: im[..., :1], lambda im: np.repeat(im[..., :1], 3, axis=2)),
    "RGBA": (lambda im: np.dstack([im, np.full(im.shape[:2], 7, np.uint8)]), lambda im: im),
    "uint16 RGB": (lambda im: im.astype(np.uint16) * 257, lambda im: im),
    "uint16 gray": (lambda im: im[..., 0].astype(np.uint16) * 257, lambda im: np.repeat(im[..., :1], 3, axis=2)),
    "float32 0..1": (lambda im: im.astype(np.float32) / 255, lambda im: im),
    "float64 0..255": (lambda im: im.astype(np.float64), lambda im: im),
    "PIL L": (lambda im: Image.fromarray(im[..., 0]), lambda im: np.repeat(im[..., :1], 3, axis=2)),
    "PIL RGBA": (lambda im: Image.fromarray(im).convert("RGBA"), lambda im: im),
    "PIL I;16": (lambda im: Image.fromarray(im[..., 0].astype(np.uint16) * 257),
                 lambda im: np.repeat(im[..., :1], 3, axis=2)),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_image_formats_are_converted_to_the_same_boxes(net, img, fmt):
    convert, equivalent = FORMATS[fmt]
    frames = [img, np.roll(img, 3, axis=1), np.roll(img, (2, 5), axis=(0, 1))]
    got = track(net, [convert(f) for f in frames])
    want = track(net, [equivalent(f) for f in frames])
    np.testing.assert_array_equal(got, want)


def test_pil_palette_image(net, img):
    frames = [Image.fromarray(img).convert("P")] * 2
    rgb = [np.asarray(f.convert("RGB")) for f in frames]
    np.testing.assert_array_equal(track(net, frames), track(net, rgb))


# --------------------------------------------------------------------------- odd sizes
@pytest.mark.parametrize("shape, box", [((1, 1), [0, 0, 1, 1]), ((72, 1), [0, 10, 1, 5]),
                                        ((1, 96), [10, 0, 5, 1]), ((2, 3), [0, 0, 3, 2])])
def test_tiny_and_one_pixel_wide_images(net, img, shape, box):
    small = np.ascontiguousarray(img[:shape[0], :shape[1]])
    boxes = track(net, [small] * 3, box)
    assert np.isfinite(boxes).all()
    cx, cy = boxes[:, 0] + (boxes[:, 2] - 1) / 2, boxes[:, 1] + (boxes[:, 3] - 1) / 2
    assert (cx >= 0).all() and (cx <= shape[1] - 1).all() and (cy >= 0).all() and (cy <= shape[0] - 1).all()


@pytest.mark.parametrize("size", [(30, 40), (144, 192), (1, 1)])
def test_frame_of_another_size_mid_sequence(net, img, size):
    other = np.ascontiguousarray(np.resize(img, (*size, 3)))
    t = SiamFCTracker(net, device="cpu")
    t.init(img, BOX)
    t.update(img)
    b = t.update(other)
    assert np.isfinite(b).all()
    cx, cy = b[0] + (b[2] - 1) / 2, b[1] + (b[3] - 1) / 2
    assert 0 <= cx <= size[1] - 1 and 0 <= cy <= size[0] - 1
    assert np.isfinite(t.update(img)).all()               # and back to the first size


@pytest.mark.parametrize("frame, match", [(np.zeros((0, 96, 3), np.uint8), "empty image"),
                                          (np.zeros((72, 0, 3), np.uint8), "empty image"),
                                          (np.zeros((72, 96, 2), np.uint8), "unsupported image shape"),
                                          (None, "got NoneType"), ("frame.jpg", "got str")])
def test_unusable_frames_are_image_errors(net, img, frame, match):
    t = SiamFCTracker(net, device="cpu")
    with pytest.raises(ImageError, match=match):
        t.init(frame, BOX)
    t.init(img, BOX)
    with pytest.raises(ImageError, match=match):
        t.update(frame)


# --------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def ckpt(net, tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "alexnet.pt", net, step=1)


def _edited(ckpt, tmp_path, name, edit):
    state = load_checkpoint(ckpt)
    edit(state)
    torch.save(state, tmp_path / name)
    return tmp_path / name


def test_checkpoint_round_trip_still_works(ckpt, net, img):
    loaded = SiamFCTracker.from_checkpoint(ckpt, device="cpu")
    np.testing.assert_array_equal(track(loaded.net, [img, img]), track(net, [img, img]))


def test_weights_of_another_architecture_name_both(ckpt, tmp_path):
    torch.manual_seed(0)
    res = build_net(ModelConfig(backbone="ciresnet22")).state_dict()
    path = _edited(ckpt, tmp_path, "mixed.pt", lambda s: s.update(model=res))
    with pytest.raises(ValueError, match=r"mixed\.pt: checkpoint arch names a alexnet network but its weights "
                                         r"are a ciresnet22 network's"):
        SiamFCTracker.from_checkpoint(path, device="cpu")


def test_unknown_backbone_and_bad_head(ckpt, tmp_path):
    path = _edited(ckpt, tmp_path, "unknown.pt", lambda s: s["arch"].update(backbone="resnet50"))
    with pytest.raises(ValueError, match=r"unknown\.pt: .*resnet50 \(unknown to pulkit\) network but its weights "
                                         r"are a alexnet network's"):
        SiamFCTracker.from_checkpoint(path, device="cpu")
    path = _edited(ckpt, tmp_path, "head.pt", lambda s: s["arch"].update(head_bias=not s["arch"]["head_bias"]))
    with pytest.raises(ValueError, match=r"head\.pt: .*its head weights .* do not fit the arch's head"):
        SiamFCTracker.from_checkpoint(path, device="cpu")


def test_bd_embedder_checkpoint_is_refused(net, tmp_path):
    path = save_training_checkpoint(tmp_path / "bd.pt", net.backbone, None, stage="bd/ahm", step=3)
    with pytest.raises(ValueError, match=r"bd\.pt: checkpoint of stage 'bd/ahm' holds no Siamese tracking network"):
        SiamFCTracker.from_checkpoint(path, device="cpu")


def test_arch_lacking_entries(ckpt, tmp_path):
    path = _edited(ckpt, tmp_path, "arch.pt", lambda s: s["arch"].pop("exemplar_sz"))
    with pytest.raises(ValueError, match=r"arch\.pt: checkpoint arch lacks \['exemplar_sz'\]"):
        SiamFCTracker.from_checkpoint(path, device="cpu")


@pytest.mark.parametrize("damage", ["half", "tail", "empty", "garbage", "zeros inside"])
def test_damaged_checkpoint_files_name_the_file(ckpt, tmp_path, damage):
    data = ckpt.read_bytes()
    mid = len(data) // 2
    damaged = {"half": data[:mid], "tail": data[:-10], "empty": b"", "garbage": b"not a checkpoint" * 64,
               "zeros inside": data[:mid] + bytes(64) + data[mid + 64:]}[damage]
    assert damaged != data
    path = tmp_path / "damaged.pt"
    path.write_bytes(damaged)
    with pytest.raises(ValueError, match=r"damaged\.pt: (cannot read checkpoint|corrupt checkpoint)"):
        SiamFCTracker.from_checkpoint(path, device="cpu")


def test_foreign_and_missing_files(net, tmp_path):
    torch.save(net.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match=r"plain\.pt: not a pulkit checkpoint"):
        SiamFCTracker.from_checkpoint(tmp_path / "plain.pt", device="cpu")
    with pytest.raises(FileNotFoundError, match=r"nope\.pt: no such checkpoint file"):
        SiamFCTracker.from_checkpoint(tmp_path / "nope.pt", device="cpu")

