"""`python -m mmcrl_core.first_run`: make a fresh workspace ready to explore.

Stores the bundled example dataset once (from installed packages, no download), so the app opens
on something real. Safe to run on every launch: an existing workspace is left as it is.
"""

from __future__ import annotations

import sys

from .workspace import default_paths


def main() -> int:
    paths = default_paths()
    try:
        from .dataset_store import ensure_default_example
    except ImportError:
        print(f"workspace ready at {paths.root}")
        return 0
    dataset = ensure_default_example(paths)
    print(f"workspace ready at {paths.root}; example dataset: {dataset}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
