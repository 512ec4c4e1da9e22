"""anon_optax: Anon and HVAdam as composable Optax transformations."""

from anon_optax._anon import anon
from anon_optax._anon import scale_by_anon
from anon_optax._anon import ScaleByAnonState
from anon_optax._hvadam import hvadam
from anon_optax._hvadam import scale_by_hvadam
from anon_optax._hvadam import ScaleByHVAdamState
from anon_optax._idu import scale_by_idu
from anon_optax._idu import ScaleByIDUState
from anon_optax._stats import preconditioner_stats

__version__ = "0.1.0"

__all__ = (
  "anon",
  "scale_by_anon",
  "ScaleByAnonState",
  "hvadam",
  "scale_by_hvadam",
  "ScaleByHVAdamState",
  "scale_by_idu",
  "ScaleByIDUState",
  "preconditioner_stats",
)
