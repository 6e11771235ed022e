"""pulkit: the reproducible research companion of PUL (CVPR 2021); see docs/ARCHITECTURE.md for the layout."""
from pulkit.core.reads import install_from_env as _trace_reads

__version__ = "0.1.0"
_trace_reads()   # only inside a kernel started by `pulkit reproduce` (records which files a notebook reads)
