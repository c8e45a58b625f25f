"""Start numba's thread pool so that its workers sleep, not spin, between kernels.

numba's default CPU threading layer here is OpenMP through the system ``libgomp``, a second OpenMP runtime
next to the one torch bundles. libgomp's default wait policy spins for a while after every parallel region,
so after each scan / conv1d kernel numba's workers keep a core busy while torch's own threads run the
projections and the encoder (and vice versa): measured, one MambaLayer forward+backward at the 8³ stage of a
64³ patch cost 394-818 ms of process CPU time with spinning workers and 308-405 ms without. :func:`ensure`
launches numba's pool once with ``OMP_WAIT_POLICY=PASSIVE`` (read by libgomp when numba loads it), unless
the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` already; torch's runtime, loaded before, keeps its policy.
"""

from __future__ import annotations

import os

_started = False


def ensure() -> None:
    """Launch numba's worker threads (idempotent, cheap after the first call)."""
    global _started
    if _started:
        return
    _started = True
    try:
        from numba.np.ufunc import parallel
    except Exception:  # numba missing or restructured: numba launches its pool itself on first use
        return
    if parallel._is_initialized or "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        parallel._launch_threads()
    except Exception:
        pass  # the kernels' own first call launches the pool (default policy)
    finally:
        os.environ.pop("OMP_WAIT_POLICY", None)
