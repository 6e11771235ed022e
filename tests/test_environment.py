"""The environment `make venv` builds: what pulkit needs to import on a machine without a display stack."""
from __future__ import annotations

import re

import cv2


def test_cv2_is_the_headless_build():
    """vot-toolkit pulls opencv-python (Qt GUI, links libGL) beside opencv-python-headless; both install
    the `cv2` package. The Makefile puts the headless files back on top, so `import pulkit` works where
    libGL is missing (slim containers, most servers). A GUI build here means that step was lost."""
    gui = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    assert gui is not None, "cv2.getBuildInformation() has no 'GUI:' line"
    assert gui.group(1).upper() == "NONE", (
        f"cv2 at {cv2.__file__} is a GUI build ({gui.group(1)}): run `make venv` "
        "(it re-installs opencv-python-headless over opencv-python)")
