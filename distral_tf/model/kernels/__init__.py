"""TensorFlow ops written in C++ for this package, compiled at first use and cached.

``rmsprop_sequence.cc`` holds ``RmspropSequence``: a Hogwild call's RMSProp steps of one variable in
one pass over its memory (used by :meth:`distral_tf.model.optim.SharedRMSProp.apply_sequence`). The
source ships with the package; the first process that needs it compiles it against the installed
TensorFlow's headers (``tf.sysconfig``) with ``$CXX`` or ``g++`` (about 20 s, once per machine and
TensorFlow version) into ``$DISTRAL_TF_KERNEL_CACHE``, by default ``~/.cache/distral_tf/kernels``.
Processes compiling at once each write their own file and move it into place atomically.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from absl import logging

_SOURCE = Path(__file__).with_name("rmsprop_sequence.cc")
_LOADING = threading.Lock()  # learner threads that reach the op at once load it once
_OPTIONS = ["-O3", "-fno-math-errno", "-shared", "-fPIC", "-Wno-deprecated-declarations"]


class KernelUnavailable(RuntimeError):
    """The op could not be compiled or loaded here (no compiler, no headers, or a failed build)."""


def cache_directory() -> Path:
    """Where compiled ops are kept: ``$DISTRAL_TF_KERNEL_CACHE``, else ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    if os.environ.get("DISTRAL_TF_KERNEL_CACHE"):
        return Path(os.environ["DISTRAL_TF_KERNEL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "distral_tf" / "kernels"


def find_compiler() -> str | None:
    """The C++ compiler the op is built with: ``$CXX``, else ``g++`` or ``c++`` on the PATH; None if none."""
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def _compiler() -> str:
    compiler = find_compiler()
    if not compiler:
        raise KernelUnavailable("no C++ compiler found (set $CXX or install g++)")
    return compiler


def build(source: Path = _SOURCE) -> Path:
    """Compiles ``source`` against this TensorFlow unless its library is cached; returns the library's path."""
    import tensorflow as tf

    compiler = _compiler()
    compile_flags = [*_OPTIONS, *tf.sysconfig.get_compile_flags()]
    link_flags = tf.sysconfig.get_link_flags()
    key = hashlib.sha256("\0".join([source.read_text(), tf.__version__, tf.sysconfig.get_include(), platform.machine(),
                                    compiler, *compile_flags, *link_flags]).encode()).hexdigest()[:16]
    library = cache_directory() / f"{source.stem}-{key}.so"
    if library.exists():
        return library
    logging.info("Compiling %s for TensorFlow %s into %s (once per machine)", source.name, tf.__version__, library)
    try:
        library.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(suffix=".so", dir=library.parent)
    except OSError as e:
        raise KernelUnavailable(f"cannot write the kernel cache {library.parent} ({e}); set "
                                "$DISTRAL_TF_KERNEL_CACHE to a writable directory") from None
    os.close(handle)
    try:
        try:
            result = subprocess.run([compiler, *compile_flags, str(source), "-o", partial, *link_flags],
                                    capture_output=True, text=True)
        except OSError as e:
            raise KernelUnavailable(f"running the compiler {compiler!r} failed: {e}") from None
        if result.returncode != 0:
            raise KernelUnavailable(f"compiling {source.name} failed ({compiler}, exit {result.returncode}): "
                                    f"{result.stderr.strip()[-2000:]}")
        os.replace(partial, library)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return library


@functools.cache
def rmsprop_sequence():
    """The ``RmspropSequence`` op (``op(var_handle, ms_handle, grads, scales, rates, decay=, epsilon=)``).

    Raises :class:`KernelUnavailable` if it cannot be compiled or loaded here.
    """
    import tensorflow as tf

    with _LOADING:
        library = build()
        try:
            return tf.load_op_library(str(library)).rmsprop_sequence
        except (tf.errors.NotFoundError, OSError) as e:
            raise KernelUnavailable(f"loading {library} failed: {e}") from None
