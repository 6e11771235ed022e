"""TraX server: a pulkit ``SiamFCTracker`` as the official VOT toolkit launches it.

``vot evaluate`` starts ``python -m pulkit.tracking.trax`` and drives the tracker over TraX
(``pulkit.evaluation.vot_toolkit`` sets this up).  Protocol, coordinates and options: docs/modules.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from pulkit.core.config import Config, ModelConfig
from pulkit.data.crops import polygon_to_xywh
from pulkit.data.images import read_rgb
from pulkit.models.net import build_net
from pulkit.tracking.siamfc import SiamFCTracker

ENV = {"checkpoint": "PULKIT_VOT_CHECKPOINT", "device": "PULKIT_VOT_DEVICE", "seed": "PULKIT_VOT_SEED",
       "backbone": "PULKIT_VOT_BACKBONE", "tracker": "PULKIT_VOT_TRACKER", "precision": "PULKIT_VOT_PRECISION"}
FILE_ORIGIN = 1.0   # VOT groundtruth.txt coordinates are 1-based for pulkit (read_vot)


# --------------------------------------------------------------------------- coordinates
def region_to_box(values) -> np.ndarray:
    """pulkit's 0-based ``[x, y, w, h]`` of a TraX region given as its numbers in ``groundtruth.txt``
    coordinates: a rectangle ``x, y, w, h`` or a polygon ``x1, y1, ..., xk, yk`` (k >= 3; its
    axis-aligned bounds).  A ``ValueError`` says what is wrong with anything else."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(v).all():
        raise ValueError(f"region has non-finite coordinates: {v.tolist()}")
    if v.size == 4:
        box = v.copy()
    elif v.size >= 6 and v.size % 2 == 0:
        box = polygon_to_xywh(v[None])[0]
    else:
        raise ValueError(f"region must be a rectangle (4 numbers) or a polygon (2k >= 6 numbers), got {v.size}")
    if box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"region {v.tolist()} has no area (width {box[2]}, height {box[3]})")
    box[:2] -= FILE_ORIGIN
    return box


def box_to_region(box) -> tuple[float, float, float, float]:
    """The TraX rectangle ``(x, y, w, h)`` in ``groundtruth.txt`` coordinates of a pulkit 0-based box."""
    b = np.asarray(box, dtype=np.float64).ravel()
    if b.size != 4:
        raise ValueError(f"a box has 4 numbers [x, y, w, h], got {b.size}")
    return float(b[0] + FILE_ORIGIN), float(b[1] + FILE_ORIGIN), float(b[2]), float(b[3])


def trax_region_values(region) -> list[float]:
    """The numbers of a ``trax`` region: ``[x, y, w, h]`` of a rectangle, corners of a polygon."""
    from trax import Region

    if region.type == Region.RECTANGLE:
        return list(region.bounds())
    if region.type == Region.POLYGON:
        return [c for point in region for c in point]
    raise ValueError(f"pulkit's TraX server takes rectangles or polygons, got a {region.type!r} region")


# --------------------------------------------------------------------------- the tracker
def make_tracker(checkpoint=None, *, device="auto", seed: int = 0, backbone: str = "alexnet",
                 overrides: dict | None = None, precision: str = "auto"):
    """A ``SiamFCTracker``: from ``checkpoint`` (a pulkit checkpoint path) or, when it is None or
    empty, an untrained ``backbone`` network initialised from ``seed`` (deterministic: the same
    seed gives the same weights, hence the same outputs).  ``overrides``: ``TrackerConfig`` fields;
    ``precision``: ``auto | fp32 | bf16`` (``pulkit.models.precision``; auto: bf16 where it is faster)."""
    overrides = dict(overrides or {})
    if checkpoint:
        return SiamFCTracker.from_checkpoint(checkpoint, device=device, precision=precision, **overrides)
    import torch

    tcfg = Config().override({"tracker": overrides}).tracker
    model_cfg = ModelConfig(backbone=backbone)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(int(seed))
    try:
        net = build_net(model_cfg)
    finally:
        torch.random.set_rng_state(generator_state)
    return SiamFCTracker(net, tcfg, model_cfg, device=device, name=f"untrained-{backbone}-seed{int(seed)}",
                         precision=precision)


def _parse_args(argv=None) -> argparse.Namespace:
    env = os.environ
    p = argparse.ArgumentParser(prog="python -m pulkit.tracking.trax",
                                description="TraX server of a pulkit SiamFC tracker for the VOT toolkit.")
    p.add_argument("--checkpoint", default=env.get(ENV["checkpoint"], ""),
                   help="pulkit checkpoint; empty: an untrained network (env PULKIT_VOT_CHECKPOINT)")
    p.add_argument("--device", default=env.get(ENV["device"], "auto"), help="auto | cpu | cuda[:i] (env PULKIT_VOT_DEVICE)")
    p.add_argument("--seed", default=env.get(ENV["seed"], "0"), help="untrained network's seed (env PULKIT_VOT_SEED)")
    p.add_argument("--backbone", default=env.get(ENV["backbone"], "alexnet"),
                   help="untrained network's backbone (env PULKIT_VOT_BACKBONE)")
    p.add_argument("--precision", default=env.get(ENV["precision"], "auto"), choices=("auto", "fp32", "bf16"),
                   help="auto | fp32 | bf16 (env PULKIT_VOT_PRECISION)")
    p.add_argument("--tracker", default=env.get(ENV["tracker"], ""),
                   help="JSON object of TrackerConfig overrides (env PULKIT_VOT_TRACKER)")
    args = p.parse_args(argv)
    try:
        args.seed = int(args.seed)
    except ValueError:
        p.error(f"seed must be an integer, got {args.seed!r}")
    try:
        args.tracker = json.loads(args.tracker) if args.tracker.strip() else {}
    except json.JSONDecodeError as e:
        p.error(f"tracker overrides are not JSON ({e}): {args.tracker!r}")
    if not isinstance(args.tracker, dict):
        p.error(f"tracker overrides must be a JSON object, got {args.tracker!r}")
    return args


def serve(tracker) -> None:
    """Answer the toolkit's TraX requests with ``tracker`` until it quits."""
    from trax import Image, Region, Server, TraxStatus
    from trax.region import Rectangle

    with Server([Region.RECTANGLE, Region.POLYGON], [Image.PATH], tracker_name="pulkit",
                tracker_family="SiamFC") as server:
        while True:
            request = server.wait()
            if request.type in (TraxStatus.QUIT, TraxStatus.ERROR):
                break
            image = read_rgb(request.image["color"].path())
            if request.type == TraxStatus.INITIALIZE:
                if len(request.objects) != 1:
                    raise ValueError(f"pulkit tracks one object, the toolkit sent {len(request.objects)}")
                region, _ = request.objects[0]
                box = region_to_box(trax_region_values(region))
                tracker.init(image, box)
                properties = {}
            else:
                box = tracker.update(image)
                properties = {"confidence": float(np.max(tracker.last_response))}
            server.status([(Rectangle.create(*box_to_region(box)), properties)])


def main(argv=None) -> None:
    args = _parse_args(argv)
    tracker = make_tracker(args.checkpoint or None, device=args.device, seed=args.seed, backbone=args.backbone,
                           overrides=args.tracker, precision=args.precision)
    serve(tracker)


if __name__ == "__main__":
    main(sys.argv[1:])
