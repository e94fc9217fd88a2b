"""Handles on a ViZDoom game: in a child process (:class:`Engine`) or in this process (:class:`InlineEngine`).

:class:`Engine` starts ``engine_process.py`` in its own session (process group), so
the game and the engine binary it spawns can always be torn down together, and
that group ends itself when this process dies (even by ``kill -9``). Any death
of the game — a crash, a kill, an engine exception — surfaces as
:class:`EngineDiedError`; closing never raises and never waits more than a few seconds.

:class:`InlineEngine` has the same interface without the child process (no pipe
round trip and no copy of the frame per step, about four times faster). A crash
of the engine then ends the calling process, so it is meant for environments that
already run in an isolated process, such as those of :class:`distral_tf.envs.pool.EnvPool`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

_SCRIPT = Path(__file__).with_name("engine_process.py")
OBS_SHAPE = (84, 84, 3)


def _wait_exited(pid: int, timeout_s: float) -> None:
    """Waits until child ``pid`` has exited, without reaping it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return
        except ChildProcessError:
            return
        time.sleep(0.005)


def live_group_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are still running (zombies do not count; read from /proc)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    members = []
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            state, _, group = stat[stat.rindex(")") + 2:].split()[:3]
            if int(group) == pgid and state != "Z":
                members.append(int(entry))
    return members


def _wait_group_dead(pgid: int, timeout_s: float) -> None:
    """Waits until no process of group ``pgid`` runs any more (a SIGKILL takes effect asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while live_group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.005)


class EngineDiedError(RuntimeError):
    """The ViZDoom process exited or reported a fatal engine error."""


class Engine:
    """One ViZDoom game in a child process.

    ``config`` holds plain values: ``wad``, ``map``, ``workdir``, ``buttons`` and
    ``variables`` (ViZDoom enum names), ``seed``, ``game_args`` and ``respawn``
    (respawn the player automatically after death) and ``objects`` (report every
    object's name and position, e.g. the bots', in :attr:`objects`).
    """

    def __init__(self, config: dict, timeout_s: float = 60.0):
        self.timeout_s = timeout_s
        parent, child = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, str(_SCRIPT), str(child.fileno()), str(os.getpid())], pass_fds=(child.fileno(),),
                cwd=config["workdir"], start_new_session=True,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        finally:
            child.close()
        self._conn = Connection(parent.detach())
        self._closed = False
        self.objects: list[tuple[str, float, float]] | None = None
        try:
            self._call("init", config)
        except EngineDiedError:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _call(self, *request):
        if self._closed:
            raise EngineDiedError("The engine was closed.")
        try:
            self._conn.send(request)
            if not self._conn.poll(self.timeout_s):
                raise EngineDiedError(f"The engine did not answer {request[0]!r} within {self.timeout_s} s.")
            status, value = self._conn.recv()
        except (EOFError, OSError) as e:
            raise EngineDiedError(f"The engine process died during {request[0]!r}.") from e
        if status != "ok":
            raise EngineDiedError(f"The engine failed during {request[0]!r}: {value}")
        return value

    def _unpack(self, reply):
        obs, variables, dead, finished, self.objects = reply
        return obs, variables, dead, finished

    def episode(self, map_name: str | None = None, commands=(), seed: int | None = None):
        """Starts a new episode (on ``map_name`` if given); returns ``(obs, variables, dead, finished)``."""
        return self._unpack(self._call("episode", map_name, list(commands), seed))

    def step(self, buttons, tics: int, commands=()):
        """Runs console ``commands``, then holds ``buttons`` for ``tics`` tics."""
        return self._unpack(self._call("step", bytes(buttons), tics, list(commands)))

    def crash(self) -> None:
        """Kills the game abruptly (fault injection for tests)."""
        try:
            self._conn.send(("crash",))
        except OSError:
            pass
        _wait_exited(self._proc.pid, 10.0)

    def close(self, grace_s: float = 3.0) -> None:
        """Asks the game to close, then kills whatever is left of its process group. Never raises."""
        if self._closed:
            return
        self._closed = True
        try:
            self._conn.send(("close",))
        except OSError:
            pass
        _wait_exited(self._proc.pid, grace_s)
        # The child is not reaped yet, so its group id cannot belong to anyone else.
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        else:
            _wait_group_dead(self._proc.pid, 5.0)  # the engine binary too, before the group id is released
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._conn.close()

    def __del__(self):
        if not getattr(self, "_closed", True):
            self.close(grace_s=0.5)


class InlineEngine:
    """One ViZDoom game in this process; the interface of :class:`Engine`.

    The engine's own exceptions (its binary exited, a signal, an error) surface as
    :class:`EngineDiedError`; ``crash()`` kills the engine binary (fault injection).
    """

    def __init__(self, config: dict, timeout_s: float = 60.0):
        from distral_tf.envs.doom.engine_process import Game

        del timeout_s  # ViZDoom's own timeouts apply in-process
        self._closed = False
        self.objects: list[tuple[str, float, float]] | None = None
        try:
            self._game = Game(config)
        except Exception as e:
            self._closed = True
            raise EngineDiedError(f"The engine failed to start: {type(e).__name__}: {e}") from e

    @property
    def pid(self) -> int:
        return os.getpid()

    def _call(self, name: str, *args):
        if self._closed:
            raise EngineDiedError("The engine was closed.")
        try:
            obs, variables, dead, finished, self.objects = getattr(self._game, name)(*args)
        except Exception as e:  # ViZDoomUnexpectedExitException, SignalException, ViZDoomErrorException
            self.close()
            raise EngineDiedError(f"The engine failed during {name!r}: {type(e).__name__}: {e}") from e
        return obs, variables, dead, finished

    def episode(self, map_name: str | None = None, commands=(), seed: int | None = None):
        """Starts a new episode (on ``map_name`` if given); returns ``(obs, variables, dead, finished)``."""
        return self._call("episode", map_name, list(commands), seed)

    def step(self, buttons, tics: int, commands=()):
        """Runs console ``commands``, then holds ``buttons`` for ``tics`` tics."""
        return self._call("step", buttons, tics, list(commands))

    def crash(self) -> None:
        """Kills the engine binary abruptly (fault injection for tests)."""
        self._game.kill_engine()

    def close(self, grace_s: float = 3.0) -> None:
        """Closes the game. Never raises."""
        del grace_s
        if self._closed:
            return
        self._closed = True
        try:
            self._game.game.close()
        except Exception:
            pass
