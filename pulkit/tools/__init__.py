"""Tools: the notebook runner, the same-numbers-twice check, the speed benchmarks."""
