"""The benchmarks package is not installed (it runs as `python -m benchmarks` from the repository
root): its tests put that root on sys.path."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
