"""Compatibility re-export: the samplers live in ``pulkit.method.sampling``."""
from pulkit.method.sampling import *  # noqa: F401,F403
from pulkit.method.sampling import BankState, EmbeddingBank, ahm_batch, batch_hardness, rss_batch  # noqa: F401
