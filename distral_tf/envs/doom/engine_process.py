"""The process that owns one ViZDoom game; run as a script by :mod:`distral_tf.envs.doom.engine`.

Keeping the game in its own process means that an engine crash, including the
segfaults ViZDoom sometimes raises inside ``close()``, only ends this process. It
talks over an inherited socket (``multiprocessing.connection`` messages) and
imports nothing from ``distral_tf`` (it loads ``process_guard.py`` by its path), so
it starts quickly. It leads its own session: when its owner dies (the socket
closes, or the owner's pid goes) it kills its group, engine binary included.

Requests are tuples ``(command, *args)``; every reply is ``("ok", value)`` or
``("error", message)``, after which the process exits.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import signal
import sys
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
from PIL import Image

OBS_SIZE = 84


RESIZE_FILTERS = ("nearest", "area")


@functools.lru_cache(maxsize=8)
def _nearest_pixels(height: int, width: int, size: int) -> np.ndarray:
    """Flat indices of the source pixels nearest to the centres of a ``size`` x ``size`` grid."""
    rows = ((np.arange(size) + 0.5) * height / size).astype(np.intp)
    cols = ((np.arange(size) + 0.5) * width / size).astype(np.intp)
    return (rows[:, None] * width + cols[None, :]).ravel()


def resize(frame: np.ndarray, size: int = OBS_SIZE, method: str = "nearest") -> np.ndarray:
    """Resizes an ``(H, W, 3)`` uint8 frame to ``(size, size, 3)``.

    ``"nearest"`` samples the scene at the centres of the ``size`` x ``size`` pixels, as a
    renderer at that resolution does (DeepMind Lab renders its 84x84 frames directly);
    ``"area"`` averages the source pixels each output pixel covers (smoother, about five
    times the cost).
    """
    if method == "nearest":
        height, width = frame.shape[:2]
        return frame.reshape(-1, 3).take(_nearest_pixels(height, width, size), axis=0).reshape(size, size, 3)
    if method == "area":
        return np.asarray(Image.fromarray(frame).resize((size, size), Image.BOX))
    raise ValueError(f"Unknown resize method {method!r}; expected one of {RESIZE_FILTERS}.")


def _child_pids() -> set[int]:
    """Process ids of this process's live children."""
    return {int(pid) for path in Path("/proc/self/task").glob("*/children") for pid in path.read_text().split()}


class Game:
    """A configured ViZDoom game; ``episode`` and ``step`` return ``(obs, variables, dead, finished, objects)``."""

    def __init__(self, config: dict):
        import vizdoom as vzd

        self.vzd = vzd
        self.config = config
        self.resize_method = config["resize"]  # checked by DoomEnv, the only maker of configs
        game = vzd.DoomGame()
        package = os.path.dirname(vzd.__file__)
        game.set_doom_game_path(os.path.join(package, "freedoom2.wad"))
        game.set_doom_scenario_path(config["wad"])
        game.set_doom_config_path(os.path.join(config["workdir"], "_vizdoom.ini"))
        game.set_doom_map(config["map"])
        game.set_screen_resolution(vzd.ScreenResolution.RES_160X120)
        game.set_screen_format(vzd.ScreenFormat.RGB24)
        for setter in ("hud", "weapon", "crosshair", "decals", "particles", "messages", "corpses",
                       "screen_flashes", "effects_sprites"):
            getattr(game, f"set_render_{setter}")(False)
        game.set_window_visible(False)
        game.set_sound_enabled(False)
        game.set_console_enabled(False)
        game.set_mode(vzd.Mode.PLAYER)
        game.set_available_buttons([getattr(vzd.Button, b) for b in config["buttons"]])
        game.set_available_game_variables([getattr(vzd.GameVariable, v) for v in config["variables"]])
        game.set_objects_info_enabled(bool(config.get("objects")))
        game.set_episode_timeout(0)
        game.set_seed(int(config["seed"]))
        game.add_game_args(" ".join(config.get("game_args", ())))
        children = _child_pids()
        game.init()
        self.engine_pids = _child_pids() - children  # the engine binary this game started
        self.game = game
        self.last_obs = np.zeros((OBS_SIZE, OBS_SIZE, 3), np.uint8)
        self.last_vars = np.zeros(len(config["variables"]), np.float64)

    def observe(self):
        state = self.game.get_state()
        objects = None
        if state is not None:
            self.last_obs = resize(state.screen_buffer, method=self.resize_method)
            self.last_vars = np.asarray(state.game_variables, np.float64)
            if state.objects is not None:
                objects = [(o.name, o.position_x, o.position_y) for o in state.objects]
        return self.last_obs, self.last_vars, self.game.is_player_dead(), self.game.is_episode_finished(), objects

    def commands(self, commands):
        for command in commands:
            self.game.send_game_command(command)

    def episode(self, map_name, commands, seed):
        if seed is not None:
            self.game.set_seed(int(seed))
        if map_name:
            self.game.set_doom_map(map_name)
        self.game.new_episode()
        self.commands(commands)
        warmup = int(self.config.get("warmup_tics", 0))
        if commands or warmup:  # console commands take effect on the next tic
            self.game.advance_action(max(1, warmup))
        return self.observe()

    def step(self, buttons, tics, commands):
        self.commands(commands)
        self.game.make_action(list(buttons), int(tics))
        if self.config.get("respawn") and self.game.is_player_dead():
            self.game.respawn_player()
        return self.observe()

    def kill_engine(self):
        """Kills the engine binary that ViZDoom started for this game (fault injection)."""
        for pid in self.engine_pids & _child_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self):
        if self.config.get("fault_on_close"):  # fault injection for tests
            os.kill(os.getpid(), signal.SIGSEGV)
        self.game.close()


def serve(conn: Connection) -> None:
    game = None
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            _process_guard().end_process_group()  # the owner went away: the engine binary goes too
        command, args = request[0], request[1:]
        try:
            if command == "init":
                game = Game(*args)
                reply = None
            elif command == "close":
                conn.send(("ok", None))
                if game is not None:
                    game.close()
                break
            elif command == "crash":  # fault injection for tests
                os.kill(os.getpid(), signal.SIGKILL)
                reply = None
            else:
                reply = getattr(game, command)(*args)
        except Exception as e:  # the engine reports its own death as an exception
            conn.send(("error", f"{type(e).__name__}: {e}"))
            break
        conn.send(("ok", reply))
    os._exit(0)


@functools.lru_cache(maxsize=1)
def _process_guard():
    path = Path(__file__).resolve().parents[1] / "process_guard.py"
    spec = importlib.util.spec_from_file_location("distral_tf_process_guard", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    fd = int(sys.argv[1])
    os.set_inheritable(fd, False)  # the engine binary must not hold the socket open after we die
    guard = _process_guard()
    guard.close_inherited_descriptors()
    guard.die_with_parent(int(sys.argv[2]) if len(sys.argv) > 2 else os.getppid())
    serve(Connection(fd))
