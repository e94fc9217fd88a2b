"""Ties a child process, and the process group it leads, to the life of its parent.

An environment process leads its own process group, which also holds the engine
binaries it starts. :func:`die_with_parent` makes the whole group go when the
parent goes, however it goes (``kill -9`` included), by three means, each covering
a case the others can miss:

- a parent-death signal (Linux ``prctl(PR_SET_PDEATHSIG)``): SIGTERM as soon as the
  parent exits, handled by killing the group;
- a watchdog thread that notices the parent's pid change (its handler cannot run
  while the main thread is inside a long native call that keeps the GIL, a thread
  can when the call releases it);
- callers treat end-of-file on their parent's pipe as the parent's death, and call
  :func:`end_process_group`.

This module imports only the standard library: the engine process loads it by path.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

_PR_SET_PDEATHSIG = 1


def end_process_group(*_args) -> None:
    """Kills this process's group if this process leads it (engines included), then exits."""
    try:
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
    finally:
        os._exit(1)


def close_inherited_descriptors() -> None:
    """Marks every open descriptor above stderr close-on-exec.

    Engine binaries started from this process then hold none of its pipes: the
    parent sees this process's death (its sentinel and pipe close) at once.
    """
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return
    for name in names:
        fd = int(name)
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def die_with_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    """Ends this process and its group when process ``parent_pid`` exits; call from the main thread."""
    signal.signal(signal.SIGTERM, end_process_group)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        end_process_group()

    def watch():
        while not stop.wait(poll_s):
            if os.getppid() != parent_pid:
                end_process_group()

    stop = threading.Event()
    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
