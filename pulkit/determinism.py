"""Compatibility entry point: ``python -m pulkit.determinism`` runs ``pulkit.tools.determinism``."""
from pulkit.tools.determinism import compare_trees, main  # noqa: F401

if __name__ == "__main__":
    raise SystemExit(main())
