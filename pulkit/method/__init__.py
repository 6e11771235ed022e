"""The paper's method in flow order: candidates, sampling (AHM / RSS), BD, mining, pairs, TC, supervised, the training loop."""
