"""The Doom suites: ``doom_mazes`` (8 tasks) and its reduced-scale ``doom_mazes_small``, ``doom_navigation``
(4), ``doom_lasertag`` (8), and one-task references from ViZDoom's own scenarios, ``basic`` (also
with its own three buttons, ``basic_own_buttons``) and ``my_way_home``."""

from __future__ import annotations

from distral_tf.envs.doom.actions import ACTION_REPEAT
from distral_tf.envs.suites import Suite

# The suites of this module and its Gymnasium environments (read by distral_tf.envs.suites without importing it).
SUITES = ("doom_mazes", "doom_mazes_small", "doom_navigation", "doom_lasertag", "basic", "basic_own_buttons",
          "my_way_home")
ENVIRONMENTS = {
    "distral_tf/DoomMaze-v0": "distral_tf.envs.doom.maze:DoomMazeEnv",
    "distral_tf/DoomNavigation-v0": "distral_tf.envs.doom.navigation:DoomNavigationEnv",
    "distral_tf/DoomLasertag-v0": "distral_tf.envs.doom.lasertag:DoomLasertagEnv",
    "distral_tf/VizdoomScenario-v0": "distral_tf.envs.doom.stock:StockScenarioEnv",
}
MAZE_ID, NAVIGATION_ID, LASERTAG_ID, STOCK_ID = ENVIRONMENTS

# Memory of one environment, all included (engine, its process's share, the worker's rollout and network
# state): from the 8 x 32 throughput runs (under 6 GiB PSS for 256 environments, docs/throughput.md); rounded up.
MEMORY_PER_ENV_BYTES = 24 << 20

# Episode lengths in agent steps (4 frames each at 35 frames/s): ~100 s for mazes, ~100 s for navigation.
_MAZE_TASKS = tuple((f"doom_maze_{i + 1:02d}", {"maze": i, "episode_length": 900 if i < 4 else 1350})
                    for i in range(8))
# The reduced-scale stand-in: smaller mazes of the same structure and 300-step episodes (~34 s of play).
_SMALL_MAZE_TASKS = tuple((f"doom_maze_small_{i + 1:02d}", {"maze": i, "maze_set": "small", "episode_length": 300})
                          for i in range(8))
_NAVIGATION_TASKS = (
    ("doom_explore_object_rewards", {"task": "object_rewards", "maze_size": 15, "num_objects": 10}),
    ("doom_explore_fetch", {"task": "fetch", "maze_size": 13}),
    ("doom_explore_goal_locations", {"task": "goal_locations", "maze_size": 15}),
    ("doom_explore_obstructed_goals", {"task": "obstructed_goals", "maze_size": 15, "max_rooms": 5}),
)
_LASERTAG_TASKS = (
    ("doom_lt_open_1bot", {"arena": "open", "size": 11, "bots": 1}),
    ("doom_lt_open_4bots", {"arena": "open", "size": 13, "bots": 4, "arena_seed": 1}),
    ("doom_lt_maze_3bots", {"arena": "maze", "size": 15, "bots": 3}),
    ("doom_lt_maze_procedural_3bots", {"arena": "maze", "size": 15, "bots": 3, "procedural_map": True}),
    ("doom_lt_rooms_procedural_5bots", {"arena": "rooms", "size": 19, "bots": 5, "procedural_map": True}),
    ("doom_lt_dark_maze_3bots", {"arena": "maze", "size": 13, "bots": 3, "light": 96, "arena_seed": 2}),
    ("doom_lt_open_procedural_bots", {"arena": "open", "size": 13, "bots": (1, 6), "procedural_bots": True,
                                      "procedural_map": True}),
    ("doom_lt_rooms_pistol_2bots", {"arena": "rooms", "size": 17, "bots": 2, "weapons": False}),
)

_TASKS = {
    "doom_mazes": (MAZE_ID, _MAZE_TASKS),
    "doom_mazes_small": (MAZE_ID, _SMALL_MAZE_TASKS),
    "doom_navigation": (NAVIGATION_ID, _NAVIGATION_TASKS),
    "doom_lasertag": (LASERTAG_ID, _LASERTAG_TASKS),
    # The scenarios' own time-outs (300 and 2,100 tics), in agent steps.
    "basic": (STOCK_ID, (("vizdoom_basic", {"scenario": "basic", "episode_length": 75}),)),
    # basic with its own three buttons (move left, move right, attack), as Sample Factory runs it.
    "basic_own_buttons": (STOCK_ID, (("vizdoom_basic_own_buttons",
                                      {"scenario": "basic", "episode_length": 75, "buttons": "scenario"}),)),
    "my_way_home": (STOCK_ID, (("vizdoom_my_way_home", {"scenario": "my_way_home", "episode_length": 525}),)),
}
# Stock scenarios run their game in the calling process (no engine child to isolate).
_POOL_KWARGS = {STOCK_ID: {}}
# basic's rewards are in hundreds (+101 a kill, -5 a missed shot, -4 an agent step): learnt at 1/100, as
# Sample Factory does. At 1 and at 1/10, a3c with default flags stops firing within its first 40,000 agent
# steps and stays at the time-out's -300; at 1/100 it keeps firing but had not learnt to aim after 480,000
# agent steps (docs/results/vizdoom_reference).
_REWARD_SCALES = {"basic": 0.01, "basic_own_buttons": 0.01}
# Observations normalised per pixel: a Doom frame is mostly the same walls, floor and weapon, and what
# changes (a monster a few pixels wide, the next corridor) moves the column's fc features by a quarter of
# their size; the LSTM's gates then see an almost constant input and the policy ignores the frame. With
# the frames centred and scaled per pixel, the column learns basic as fast as Sample Factory does
# (docs/results/vizdoom_reference).
# The preview keeps one map per file and tracks objects (for its top-down maps) on the generated maps.
_PREVIEW_KWARGS = {STOCK_ID: {}}
_GENERATED_MAP_PREVIEW = {"episode_length": None, "maps_per_wad": 1, "track_objects": True}


def suite(name: str) -> Suite:
    """The Doom suite called ``name``."""
    if name not in _TASKS:
        raise ValueError(f"Unknown Doom suite {name!r}; choose from {', '.join(SUITES)}.")
    env_id, tasks = _TASKS[name]
    return Suite(name=name, task_names=tuple(t for t, _ in tasks), env_ids=(env_id,) * len(tasks),
                 env_kwargs=tuple(dict(kw) for _, kw in tasks), frames_per_step=ACTION_REPEAT,
                 pool_env_kwargs=_POOL_KWARGS.get(env_id, {"isolate_engine": False}),
                 reward_scale=_REWARD_SCALES.get(name, 1.0), memory_per_env_bytes=MEMORY_PER_ENV_BYTES,
                 preview_env_kwargs=_PREVIEW_KWARGS.get(env_id, _GENERATED_MAP_PREVIEW),
                 observation_normalization="per_pixel")
