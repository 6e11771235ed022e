"""Shared fixtures: the bundled sequences, a tiny synthetic split, a frame writer.

Everything generated lives in pytest's temporary folders; nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pulkit.core import paths

SHARED_SEQUENCES = ("otb/Crossing", "otb/Deer", "otb/Skating1", "vot/bag", "vot/ball1")


@pytest.fixture(scope="session")
def shared_root() -> Path:
    """The bundled real sequences (``pulkit.core.paths.shared_sequences()``); FAILS when they are missing.

    A missing data folder is a broken checkout, not a reason to skip: tests that need it must not pass silently.
    """
    root = paths.shared_sequences()
    missing = [n for n in SHARED_SEQUENCES if not (root / n).is_dir()]
    if missing:
        pytest.fail(f"bundled sequences missing under {root}: {', '.join(missing)} (set PULKIT_SHARED)")
    return root


@pytest.fixture(scope="session")
def synthetic_split(tmp_path_factory) -> Path:
    """A tiny synthetic split in GOT-10k layout (3 videos x 8 frames, 96 x 72, seed 7); read-only please."""
    from pulkit.data.synthetic import generate_split

    return generate_split(tmp_path_factory.mktemp("synthetic") / "val", n_videos=3, n_frames=8,
                          width=96, height=72, seed=7, n_distractors=1)


def _write_frames(folder: Path, n: int, pattern: str = "{:08d}.jpg", size: tuple[int, int] = (48, 32),
                  start: int = 1, gray: bool = False, seed: int = 0) -> list[Path]:
    """Write ``n`` random frames (``size`` = width, height) named ``pattern.format(start + i)``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        shape = (size[1], size[0]) if gray else (size[1], size[0], 3)
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        p = folder / pattern.format(start + i)
        ok, buf = cv2.imencode(p.suffix, img)
        assert ok, p
        buf.tofile(str(p))
        out.append(p)
    return out


@pytest.fixture
def write_frames():
    """``write_frames(folder, n, pattern="{:08d}.jpg", size=(w, h), start=1, gray=False)`` -> paths."""
    return _write_frames


def _textured_videos(root: Path, n_videos: int = 3, n_frames: int = 4, width: int = 96,
                     height: int = 72) -> list[list[Path]]:
    """Tiny textured videos (PNG) for BD: each video its own colour and texture scale, the texture
    shifting one pixel per frame. Returns each video's frame paths (``root/vid<v>/<i>.png``)."""
    videos = []
    for v in range(n_videos):
        rng = np.random.default_rng(v)
        d = Path(root) / f"vid{v}"
        d.mkdir(parents=True)
        base = cv2.resize(rng.integers(0, 256, (height // (2 + v), width // (2 + v), 3), dtype=np.uint8),
                          (width + 8, height + 8), interpolation=cv2.INTER_NEAREST)
        frames = []
        for i in range(n_frames):
            p = d / f"{i + 1:08d}.png"
            cv2.imwrite(str(p), base[i:i + height, i:i + width, ::-1])
            frames.append(p)
        videos.append(frames)
    return videos


@pytest.fixture
def textured_videos():
    """``textured_videos(root, n_videos=3, n_frames=4, width=96, height=72)`` -> per-video frame paths."""
    return _textured_videos


def _lines(rows, sep: str = ",") -> str:
    return "".join(sep.join(v if isinstance(v, str) else f"{v:g}" for v in r) + "\n" for r in rows)


@pytest.fixture
def make_otb():
    """``make_otb(root, name, boxes_1based, n_frames=len(boxes), sep=",")`` -> sequence folder (OTB layout)."""
    def make(root, name, boxes, n_frames=None, sep=","):
        folder = Path(root) / name
        _write_frames(folder / "img", len(boxes) if n_frames is None else n_frames, "{:04d}.jpg")
        (folder / "groundtruth_rect.txt").write_text(_lines(boxes, sep))
        return folder
    return make


@pytest.fixture
def make_vot():
    """``make_vot(root, name, rows_1based, n_frames=len(rows), color=False)`` -> sequence folder; adds list.txt."""
    def make(root, name, rows, n_frames=None, color=False):
        folder = Path(root) / name
        _write_frames(folder / "color" if color else folder, len(rows) if n_frames is None else n_frames, size=(64, 48))
        (folder / "groundtruth.txt").write_text(_lines(rows))
        lst = Path(root) / "list.txt"
        names = lst.read_text().split() if lst.is_file() else []
        lst.write_text("\n".join([*names, name]) + "\n")
        return folder
    return make


@pytest.fixture
def make_got10k():
    """``make_got10k(split_dir, name, boxes_0based, absence=None, cover=None, resolution=(48, 32))`` -> folder;
    appends to ``split_dir/list.txt`` and writes meta_info.ini the GOT-10k way."""
    def make(split, name, boxes, absence=None, cover=None, resolution=(48, 32)):
        folder = Path(split) / name
        n = len(boxes)
        _write_frames(folder, n, size=resolution)
        (folder / "groundtruth.txt").write_text(_lines(boxes))
        (folder / "absence.label").write_text(_lines([[a] for a in (absence or [0] * n)]))
        (folder / "cover.label").write_text(_lines([[c] for c in (cover or [8] * n)]))
        (folder / "meta_info.ini").write_text(f"[METAINFO]\nobject_class: toy\nresolution: ({resolution[0]}, {resolution[1]})\n")
        lst = Path(split) / "list.txt"
        names = lst.read_text().split() if lst.is_file() else []
        lst.write_text("\n".join([*names, name]) + "\n")
        return folder
    return make


def use_output_dirs(mp, root: Path) -> None:
    """Point data, results, checkpoints and figures under ``root`` (``mp``: a pytest MonkeyPatch)."""
    for var, sub in (("PULKIT_DATA", "data"), ("PULKIT_RESULTS", "results"), ("PULKIT_CHECKPOINTS", "checkpoints"),
                     ("PULKIT_FIGURES", "figures")):
        mp.setenv(var, str(root / sub))
