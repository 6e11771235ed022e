"""Evaluation: OTB, GOT-10k and VOT protocols over stored tracker outputs, the got10k and VOT-toolkit
bridges.  The protocols' public functions are re-exported here."""
from pulkit.evaluation.got10k import evaluate_got10k
from pulkit.evaluation.otb import evaluate_otb, otb_metrics
from pulkit.evaluation.outputs import checkpoint_digest, result_key, run_sequence, to_table, tracker_key
from pulkit.evaluation.vot import (
                                   eao_curve,
                                   eao_fragments,
                                   eao_score,
                                   evaluate_vot,
                                   region_overlap,
                                   run_vot_sequence,
                                   vot_accuracy,
                                   vot_failures,
                                   vot_overlaps,
)

__all__ = ["evaluate_otb", "otb_metrics", "evaluate_got10k", "evaluate_vot", "run_vot_sequence", "vot_overlaps",
           "vot_accuracy", "vot_failures", "eao_fragments", "eao_curve", "eao_score", "region_overlap",
           "run_sequence", "result_key", "tracker_key", "checkpoint_digest", "to_table"]
