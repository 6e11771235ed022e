"""pulkit: the reproducible research companion of PUL (CVPR 2021); see docs/ARCHITECTURE.md for the layout."""
__version__ = "0.1.0"
