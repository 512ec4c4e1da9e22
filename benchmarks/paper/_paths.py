"""Makes ``anon_optax`` and the examples importable from a source checkout."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
for p in (str(ROOT), str(EXAMPLES)):
  if p not in sys.path:
    sys.path.insert(0, p)
