"""Compatibility entry point: ``python -m pulkit.bench`` runs ``pulkit.tools.bench``."""
from pulkit.tools.bench import BENCHES, main  # noqa: F401

if __name__ == "__main__":
    raise SystemExit(main())
