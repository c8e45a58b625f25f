"""Where numba may cache the compiled kernels, decided before they are decorated.

``@njit(cache=True)`` raises ``cannot cache function ... no locator available`` at import when numba finds
no writable cache folder: its own ``NUMBA_CACHE_DIR``, the package's ``__pycache__`` or the user cache
(``$XDG_CACHE_HOME`` / ``~/.cache``); typical of an inference container with a read-only image and home.
:func:`choose` probes those in numba's order (as numba does: create the folder, write a temporary file) and
otherwise points ``numba.config.CACHE_DIR`` at ``<tempdir>/hnc-petct-numba-<uid>``; if even that is not
writable the kernels are compiled without caching (a :class:`RuntimeWarning` says so; each new process
then pays the JIT compile, ~1 min).
"""

from __future__ import annotations

import os
import tempfile
import warnings


def _writable(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def _user_wide_dir() -> str:
    from numba.misc.appdirs import AppDirs

    return AppDirs(appname="numba", appauthor=False).user_cache_dir


def _default_fallback() -> str:
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), f"hnc-petct-numba-{uid}")


def choose(module_file: str, fallback: str | None = None) -> tuple[bool, str | None]:
    """(cache?, folder set as numba.config.CACHE_DIR or None) for kernels defined in ``module_file``."""
    import numba

    if numba.config.CACHE_DIR and _writable(numba.config.CACHE_DIR):
        return True, None
    if _writable(os.path.join(os.path.dirname(os.path.abspath(module_file)), "__pycache__")):
        return True, None
    if _writable(_user_wide_dir()):
        return True, None
    folder = fallback or _default_fallback()
    if _writable(folder):
        numba.config.CACHE_DIR = folder
        return True, folder
    warnings.warn(f"numba kernels are not cached: no writable cache folder (package dir, user cache, {folder}); "
                  "set NUMBA_CACHE_DIR to a writable folder to avoid compiling them in every process",
                  RuntimeWarning, stacklevel=2)
    return False, None
