"""The Doom tasks in the real engine: API conformance, scripted agents, bots, engine deaths."""

import math
import os
import pickle
import signal
import struct
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

pytest.importorskip("vizdoom")

from distral_tf.envs import make_suite  # noqa: E402
from distral_tf.envs.doom.actions import ACTION_NAMES, NUM_ACTIONS  # noqa: E402
from distral_tf.envs.doom.engine import live_group_members  # noqa: E402
from distral_tf.envs.doom.engine_process import resize  # noqa: E402
from distral_tf.envs.doom.lasertag import DoomLasertagEnv  # noqa: E402
from distral_tf.envs.doom.mapgen import Layout, cell_center  # noqa: E402
from distral_tf.envs.doom.maze import DoomMazeEnv  # noqa: E402
from distral_tf.envs.doom.navigation import DoomNavigationEnv  # noqa: E402
from distral_tf.envs.doom.wad import UdmfMap, write_wad  # noqa: E402

FORWARD, TURN_LEFT, TURN_RIGHT, FIRE = 0, 4, 5, 8


def heading_action(env, x, y, tolerance=20.0, aligned=FORWARD):
    px, py = env.position
    diff = (math.degrees(math.atan2(y - py, x - px)) - env.var("ANGLE") + 180) % 360 - 180
    return TURN_LEFT if diff > tolerance else TURN_RIGHT if diff < -tolerance else aligned


def walk_to(env, target, stop=lambda r, info: False, max_steps=600):
    """Follows a BFS path over the scene's cell grid; returns the rewards until arrival or ``stop``."""
    rewards = []
    for cell in env.scene.layout.shortest_path(env.cell, target)[1:]:
        tx, ty = cell_center(cell)
        while math.hypot(tx - env.position[0], ty - env.position[1]) > 24 and len(rewards) < max_steps:
            _, reward, _, _, info = env.step(heading_action(env, tx, ty))
            rewards.append(reward)
            if stop(reward, info):
                return rewards
    return rewards


def test_wad_directory_and_udmf_text(tmp_path):
    level = UdmfMap()
    sector = level.add_sector("FLOOR0_1", "CEIL3_5")
    level.add_line((0, 0), (64, 0), sector, "STARTAN2")
    level.add_thing(1, 32, -32)
    data = write_wad(tmp_path / "a.wad", {"MAP01": level, "M2": level}).read_bytes()
    magic, count, offset = struct.unpack_from("<4sii", data)
    names = [struct.unpack_from("<ii8s", data, offset + 16 * i)[2].rstrip(b"\0") for i in range(count)]
    assert magic == b"PWAD" and names == [b"MAP01", b"TEXTMAP", b"ENDMAP", b"M2", b"TEXTMAP", b"ENDMAP"]
    text = level.textmap()
    assert text.startswith('namespace="zdoom";') and "skill1=true;" in text and "single=true;" in text
    assert level.add_vertex(0, 0) == 0 and len(level.vertices) == 2  # vertices are shared


def test_layout_shortest_path():
    layout = Layout.from_text("*****\n*   *\n* * *\n*   *\n*****\n")
    path = layout.shortest_path((1, 1), (3, 3))
    assert path[0] == (1, 1) and path[-1] == (3, 3) and len(path) == 5
    assert all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in zip(path, path[1:], strict=False))


def test_importing_envs_does_not_import_engines():
    code = "import sys, distral_tf.envs; assert 'vizdoom' not in sys.modules and 'deepmind_lab' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name,count", [("doom_mazes", 8), ("doom_mazes_small", 8), ("doom_navigation", 4),
                                        ("doom_lasertag", 8)])
def test_suites_share_spaces_and_are_cheap_to_build(name, count):
    suite = make_suite(name)
    assert suite.num_tasks == count and suite.frames_per_step == 4
    pickle.loads(pickle.dumps(suite.env_kwargs))
    for i in range(count):
        env = suite.make_env(i)  # construction starts no engine
        assert env.action_space == gym.spaces.Discrete(NUM_ACTIONS)
        assert env.observation_space == gym.spaces.Box(0, 255, (84, 84, 3), np.uint8)
        env.close()


@pytest.mark.parametrize("name", ["doom_mazes", "doom_navigation", "doom_lasertag"])
def test_check_env(name):
    suite = make_suite(name)
    env = suite.make_env(suite.num_tasks - 1, episode_length=20, maps_per_wad=2)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=5)
    obs2, reward, terminated, truncated, info = env.step(0)
    assert obs2.dtype == np.uint8 and obs2.shape == (84, 84, 3) and info["frames"] == 4
    env.close()


@pytest.mark.parametrize("name,length", [("basic", 75), ("my_way_home", 525)])
def test_vizdoom_scenarios_are_one_task_suites_with_the_shared_conventions(name, length):
    suite = make_suite(name)
    assert suite.num_tasks == 1 and suite.frames_per_step == 4
    env = suite.make_env(0)
    assert env.action_space == gym.spaces.Discrete(NUM_ACTIONS)
    assert env.observation_space == gym.spaces.Box(0, 255, (84, 84, 3), np.uint8)
    obs, info = env.reset(seed=1)
    assert obs.shape == (84, 84, 3) and obs.dtype == np.uint8 and obs.std() > 0
    steps, truncated, terminated = 0, False, False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(2)  # strafe left: no goal is reached
        steps += 1
    assert truncated and not terminated and steps == length and info["frames"] == 4
    env.close()


def test_vizdoom_basic_killing_the_monster_terminates_the_episode_with_its_reward():
    env = make_suite("basic").make_env(0)
    fire, left, right = (ACTION_NAMES.index(a) for a in ("fire", "strafe_left", "strafe_right"))
    sweep = [left] * 12 + [fire, right] * 30 + [fire] * 10  # to the left wall, then fire on the way right
    kills = 0
    for seed in range(4):
        env.reset(seed=seed)
        rewards = []
        for action in sweep:
            _, reward, terminated, truncated, _ = env.step(action)
            rewards.append(reward)
            if terminated or truncated:
                break
        assert terminated or truncated
        kills += terminated
        # The kill's +101 (less the step's tics) comes in one step; otherwise -1 per tic, -5 per missed shot.
        assert (max(rewards) > 90) == terminated and sum(r > 0 for r in rewards) == terminated
    assert kills >= 2
    env.close()


def test_vizdoom_basic_with_its_own_buttons_has_three_actions_and_the_same_rewards():
    env = make_suite("basic_own_buttons").make_env(0)
    assert env.action_space == gym.spaces.Discrete(3)  # move left, move right, attack
    left, right, fire = 0, 1, 2
    kills = 0
    for seed in range(4):
        env.reset(seed=seed)
        rewards = []
        for action in [left] * 12 + [fire, right] * 30 + [fire] * 10:
            _, reward, terminated, truncated, _ = env.step(action)
            rewards.append(reward)
            if terminated or truncated:
                break
        kills += terminated
        assert (max(rewards) > 90) == terminated
        assert terminated or rewards.count(-4.0) + rewards.count(-9.0) == len(rewards)  # a tic costs 1, a miss 5
    assert kills >= 2
    from distral_tf.envs.doom.stock import StockScenarioEnv

    with pytest.raises(ValueError, match="Unknown buttons 'all'"):
        StockScenarioEnv("basic", buttons="all")
    env.close()


def test_small_mazes_are_smaller_mazes_of_the_same_structure():
    from distral_tf.envs.doom.maze import fixed_layout

    small = [len(fixed_layout(i, "small").floor_cells()) for i in range(8)]
    paper = [len(fixed_layout(i).floor_cells()) for i in range(8)]
    assert max(small) < max(paper) and sum(small) < sum(paper) / 2
    assert min(small) >= 12 and len({tuple(fixed_layout(i, "small").floor_cells()) for i in range(8)}) == 8
    env = make_suite("doom_mazes_small").make_env(3)
    assert env.unwrapped.episode_length == 300 and env.unwrapped.maze_set == "small"
    with pytest.raises(ValueError, match="maze_set"):
        fixed_layout(0, "huge")
    env.close()


def test_maze_scripted_agent_apple_goal_and_respawn():
    env = DoomMazeEnv(maze=0, episode_length=3000, maps_per_wad=1)
    env.reset(seed=3)
    scene = env.scene
    assert env.cell == scene.start and scene.goal not in scene.apples
    apple = min(scene.apples, key=lambda c: len(scene.layout.shortest_path(scene.start, c)))
    rewards = walk_to(env, apple)
    assert 1.0 in rewards and env.cell == apple and max(rewards) < 10

    rewards = walk_to(env, scene.goal, stop=lambda r, info: r >= 10)
    assert rewards[-1] >= 10 and env.unwrapped._episode_stats["goals"] == 1
    _, _, _, _, info = env.step(TURN_LEFT)  # the respawn happens at the start of the next step
    assert scene.layout.distances(scene.goal)[env.cell] >= 3
    assert env.scene.goal == scene.goal and info["apples"] >= 1
    env.close()


def test_maze_truncates_after_episode_length():
    env = DoomMazeEnv(maze=1, episode_length=5, maps_per_wad=2)
    env.reset(seed=0)
    flags = [env.step(TURN_LEFT)[3] for _ in range(5)]
    assert flags == [False] * 4 + [True]
    env.close()


def test_navigation_new_maze_every_episode():
    env = DoomNavigationEnv(task="goal_locations", episode_length=5, maps_per_wad=2)
    walls = []
    for seed in (1, None, None, None):
        env.reset(seed=seed)
        walls.append(env.scene.layout.walls.tobytes())
    assert len(set(walls)) == 4  # also across a WAD refill (2 maps per WAD)
    env.reset(seed=1)
    assert env.scene.layout.walls.tobytes() == walls[0]  # seeding reproduces the maze
    env.close()


def test_navigation_fetch_and_obstructed_goals():
    env = DoomNavigationEnv(task="fetch", maze_size=11, episode_length=3000, maps_per_wad=1)
    env.reset(seed=2)
    scene = env.scene
    rewards = walk_to(env, scene.objects[0], stop=lambda r, info: r > 0)
    assert rewards[-1] == 1.0
    rewards = walk_to(env, scene.start, stop=lambda r, info: r > 0)
    assert rewards[-1] == 10.0 and env.scene.objects != scene.objects  # a new object elsewhere
    env.close()

    env = DoomNavigationEnv(task="obstructed_goals", maze_size=11, episode_length=3000, maps_per_wad=1)
    env.reset(seed=4)
    scene = env.scene
    assert scene.obstructions and all(scene.layout.walls[c] for c in scene.obstructions)
    rewards = walk_to(env, scene.goal, stop=lambda r, info: r > 0)
    assert rewards[-1] == 10.0
    assert env.scene is not scene and env.scene.goal == scene.goal and env.cell == env.scene.start
    env.close()


def test_lasertag_bots_present_and_frags_counted():
    env = DoomLasertagEnv(arena="open", size=7, pillars=0.0, bots=1, weapons=False, episode_length=400,
                          track_objects=True)
    env.reset(seed=1)
    assert env.var("PLAYER_COUNT") == 2 and env.team == ("Rambo",)
    env.unwrapped._pending += ["god", "give chaingun"]  # a scripted shooter that survives and hits hard
    reward = 0.0
    for _ in range(400):
        me = env.position
        bots = [(x, y) for name, x, y in env.objects if name == "DoomPlayer" and math.dist((x, y), me) > 1]
        action = heading_action(env, *bots[0], tolerance=8, aligned=FIRE) if bots else TURN_LEFT
        _, reward, _, _, info = env.step(action)
        if reward:
            break
    assert reward == 1.0 and info["frags"] == 1
    env.unwrapped._pending.append("kill")  # a suicide costs a frag and counts a death: -1 in total
    _, reward, _, _, info = env.step(TURN_LEFT)
    assert reward == -1.0 and info["deaths"] == 1
    for _ in range(3):
        env.step(TURN_LEFT)
    assert env.var("HEALTH") > 0  # respawned
    env.close()


def test_lasertag_procedural_bots_vary():
    env = DoomLasertagEnv(arena="open", size=9, bots=(1, 6), procedural_bots=True, episode_length=5)
    teams = set()
    for seed in (0, None, None, None):
        env.reset(seed=seed)
        teams.add(env.team)
        assert env.var("PLAYER_COUNT") == len(env.team) + 1
    assert len(teams) > 1
    env.close()


def _engine_binary_pids(engine_pid):
    return [p for p in live_group_members(engine_pid) if p != engine_pid]


@pytest.mark.faults
@pytest.mark.parametrize("victim", ["engine_binary", "engine_process"])
def test_engine_death_truncates_episode_and_next_reset_restarts(victim):
    env = DoomMazeEnv(maze=0, episode_length=50, maps_per_wad=2)
    env.reset(seed=0)
    engine = env.unwrapped._engine
    if victim == "engine_binary":
        for pid in _engine_binary_pids(engine.pid):
            os.kill(pid, signal.SIGKILL)
    else:
        engine.crash()
    obs, reward, terminated, truncated, info = env.step(FORWARD)
    assert truncated and not terminated and reward == 0.0 and "engine" in info["engine_error"]
    assert obs.shape == (84, 84, 3)
    obs, info = env.reset()
    assert info["engine_restarts"] == 1 and env.step(FORWARD)[1] == 0.0
    env.close()


@pytest.mark.faults
def test_inline_engine_death_truncates_episode_and_next_reset_restarts():
    env, neighbour = (DoomMazeEnv(maze=0, episode_length=50, maps_per_wad=2, isolate_engine=False)
                      for _ in range(2))
    env.reset(seed=0)
    neighbour.reset(seed=1)
    engine = env.unwrapped._engine
    assert engine.pid == os.getpid()
    engine.crash()  # kills this game's engine binary, a child of this process
    obs, reward, terminated, truncated, info = env.step(FORWARD)
    assert truncated and not terminated and reward == 0.0 and "engine" in info["engine_error"]
    assert not neighbour.step(FORWARD)[3]  # the other game in this process is untouched
    obs, info = env.reset()
    assert info["engine_restarts"] == 1 and env.step(FORWARD)[1] == 0.0
    env.close()
    neighbour.close()


def test_inline_and_isolated_engines_give_the_same_episode():
    suite = make_suite("doom_mazes")
    envs = [suite.make_env(1, in_pool=in_pool) for in_pool in (False, True)]
    assert [type(e.unwrapped._engine).__name__ for e in envs] == ["NoneType", "NoneType"]
    first = [e.reset(seed=3)[0] for e in envs]
    assert [type(e.unwrapped._engine).__name__ for e in envs] == ["Engine", "InlineEngine"]
    np.testing.assert_array_equal(first[0], first[1])
    rng = np.random.default_rng(0)
    for _ in range(60):
        action = int(rng.integers(NUM_ACTIONS))
        a, b = (e.step(action) for e in envs)
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:4] == b[1:4]
    for e in envs:
        e.close()


def test_nearest_resize_samples_pixel_centres_and_area_resize_averages():
    rows, cols = np.meshgrid(np.arange(120), np.arange(160), indexing="ij")
    frame = np.stack([rows, cols, (rows + cols) % 256], axis=-1).astype(np.uint8)
    out = resize(frame, 84, "nearest")
    assert out.shape == (84, 84, 3) and out.dtype == np.uint8
    for i, j in [(0, 0), (41, 17), (83, 83)]:
        # Output pixel centre (i + 0.5, j + 0.5) lies in source pixel floor((i + 0.5) * 120 / 84).
        assert tuple(out[i, j]) == tuple(frame[int((i + 0.5) * 120 / 84), int((j + 0.5) * 160 / 84)])
    assert np.all(np.diff(out[:, 0, 0].astype(int)) > 0) and np.all(np.diff(out[0, :, 1].astype(int)) > 0)
    # Four 0/255 blocks whose border falls inside an output row: area averaging keeps each block's
    # colour in its interior and blends at the border; sampling never invents a colour.
    board = np.zeros((120, 160, 3), np.uint8)
    board[:58, :79] = board[58:, 79:] = 255
    area, nearest = resize(board, 84, "area"), resize(board, 84, "nearest")
    assert area[10, 10, 0] == 255 and area[10, 70, 0] == 0
    blended = (area > 0) & (area < 255)
    assert blended[:, 10, 0].any() and blended[10, :, 0].any()
    assert set(np.unique(nearest)) == {0, 255}
    assert abs(area.mean() - board.mean()) < 2 and abs(nearest.mean() - board.mean()) < 2
    with pytest.raises(ValueError, match="Unknown resize method 'bicubic'"):
        resize(board, 84, "bicubic")


def test_frame_resize_option_changes_only_the_filter():
    with pytest.raises(ValueError, match="Unknown frame_resize 'bilinear'"):
        DoomMazeEnv(maze=0, frame_resize="bilinear")
    envs = [DoomMazeEnv(maze=0, maps_per_wad=2, frame_resize=f, isolate_engine=False) for f in ("nearest", "area")]
    obs = [e.reset(seed=5)[0] for e in envs]
    for _ in range(20):
        steps = [e.step(FORWARD) for e in envs]
        assert steps[0][1:4] == steps[1][1:4] and envs[0].position == envs[1].position
        obs = [s[0] for s in steps]
    assert obs[0].shape == obs[1].shape == (84, 84, 3)
    assert not np.array_equal(obs[0], obs[1])
    # Same view, two filters: the images agree closely on average.
    assert np.abs(obs[0].astype(float) - obs[1].astype(float)).mean() < 12
    for e in envs:
        e.close()


@pytest.mark.faults
def test_segfault_in_close_does_not_reach_the_caller():
    env = DoomMazeEnv(maze=0, episode_length=50, maps_per_wad=2, fault_on_close=True)
    env.reset(seed=0)
    engine = env.unwrapped._engine
    workdir = env.unwrapped._workdir
    env.close()  # the engine process segfaults while closing; this process carries on
    assert engine._proc.returncode == -signal.SIGSEGV
    assert not workdir.exists()
    assert live_group_members(engine.pid) == []  # nothing of the engine's process group is left
