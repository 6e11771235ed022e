"""One module per notebook: computes and writes results, never plots."""
