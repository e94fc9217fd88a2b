"""The two-room grid world environment and its suites."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import distral_tf.envs  # noqa: F401  (registers the environments)
from distral_tf.envs import make_suite
from distral_tf.envs import two_rooms as tr
from distral_tf.envs.suites import Suite


@pytest.mark.parametrize("observation", ["image", "index"])
@pytest.mark.parametrize("layout", ["paper", "small"])
def test_check_env_and_spaces(layout, observation):
    env = gym.make("distral_tf/TwoRooms-v0", layout=layout, observation=observation, task_seed=3,
                   episode_length=20, image_size=40, disable_env_checker=True)
    check_env(env.unwrapped, skip_render_check=False)
    obs, info = env.reset(seed=0)
    assert env.action_space == gym.spaces.Discrete(4)
    assert env.observation_space.contains(obs)
    if observation == "image":
        assert obs.shape == (40, 40, 3) and obs.dtype == np.uint8
    else:
        assert env.observation_space.n == tr.get_layout(layout).num_states
        assert obs == info["state"]
    assert {"cell", "position", "goal", "state"} <= set(info)


def test_layout_tables():
    layout = tr.get_layout("paper")
    # Cells are row-major (row, column) of non-wall characters; moves stay on the grid.
    for i, (r, c) in enumerate(layout.cells):
        for a, (dr, dc) in enumerate(tr._MOVES):
            j = layout.next_cell[i, a]
            if layout.grid[r + dr][c + dc] == "#":
                assert j == i
            else:
                assert tuple(layout.cells[j]) == (r + dr, c + dc)
    # The corridor is a horizontal line of cells whose up/down moves hit walls.
    assert len(layout.corridor) >= 3
    assert np.all(layout.next_cell[layout.corridor, tr.UP] == layout.corridor)
    assert np.all(layout.next_cell[layout.corridor, tr.DOWN] == layout.corridor)
    assert np.all(np.diff(layout.cells[layout.corridor, 1]) == 1)
    states = np.arange(layout.num_states)
    assert np.array_equal(layout.state_index(*layout.decode_state(states)), states)


def test_reward_and_respawn_at_goal():
    layout = tr.get_layout("small")
    goal = int(layout.corridor[0])  # the doorway between the rooms
    env = tr.TwoRoomsEnv(layout="small", goal=goal, observation="index", episode_length=1000)
    env.reset(seed=0)
    left_of_goal = int(np.flatnonzero(layout.next_cell[:, tr.RIGHT] == goal)[0])
    rewards, respawns = [], set()
    for _ in range(50):
        env._cell = left_of_goal
        obs, reward, terminated, truncated, info = env.step(tr.RIGHT)
        rewards.append(reward)
        assert not terminated and not truncated
        assert info["cell"] != goal  # respawned away from the goal
        respawns.add(info["cell"])
        assert layout.decode_state(obs)[1:] == (tr.RIGHT, 1)  # previous action and reward
    assert rewards == [1.0] * 50
    assert len(respawns) > layout.num_cells // 2  # new starts are drawn over the grid
    # Away from the goal there is no reward and the previous reward goes back to 0.
    env._cell = int(layout.next_cell[left_of_goal, tr.LEFT])
    obs, reward, *_ = env.step(tr.LEFT)
    assert reward == 0.0 and layout.decode_state(obs)[2] == 0


def test_episode_is_truncated_at_fixed_length():
    env = tr.TwoRoomsEnv(layout="small", observation="index", episode_length=7)
    env.reset(seed=1)
    ends = [env.step(env.action_space.sample())[2:4] for _ in range(7)]
    assert ends[:-1] == [(False, False)] * 6 and ends[-1] == (False, True)


def test_goal_from_task_seed_and_determinism():
    a = tr.TwoRoomsEnv(layout="paper", task_seed=5, observation="image", image_size=84)
    b = tr.TwoRoomsEnv(layout="paper", task_seed=5, observation="image", image_size=84)
    assert a.goal == b.goal == tr.task_goal(a.layout, 5)
    rng = np.random.default_rng(0)
    actions = rng.integers(4, size=200)
    for env in (a, b):
        env.reset(seed=123)
    for act in actions:
        oa, ra, *_, ia = a.step(act)
        ob, rb, *_, ib = b.step(act)
        assert np.array_equal(oa, ob) and ra == rb and ia == ib
    starts = {tr.TwoRoomsEnv(layout="paper", task_seed=5).reset(seed=s)[1]["cell"] for s in range(30)}
    assert len(starts) > 10


def test_image_shows_agent_previous_action_and_reward():
    layout = tr.get_layout("small")
    door = int(layout.corridor[0])
    env = tr.TwoRoomsEnv(layout="small", goal=door, observation="image", image_size=40)
    obs, info = env.reset(seed=0)
    assert np.all(obs[0] == 0)  # no previous action yet
    env._cell = int(layout.next_cell[door, tr.LEFT])  # left of the doorway goal
    obs, reward, *_ = env.step(tr.RIGHT)
    assert reward == 1.0
    assert np.all(obs[0, 5] == tr._ACTION_COLOURS[tr.RIGHT]) and np.all(obs[20, 0] == 255)
    # Exactly one agent-coloured cell, at the agent's position.
    yellow = np.all(obs == tr._AGENT, axis=-1)
    rows, cols = np.nonzero(yellow)
    p = env._cell_px
    assert yellow.sum() == p * p
    r, c = env.layout.cells[env._cell]
    assert (rows.min() - env._origin[0]) // p == r and (cols.min() - env._origin[1]) // p == c


@pytest.mark.parametrize("name,num_tasks", [("two_rooms", 8), ("two_rooms_small", 3)])
def test_suites(name, num_tasks):
    suite = make_suite(name)
    assert suite.num_tasks == num_tasks and suite.frames_per_step == 1
    goals = [k["goal"] for k in suite.env_kwargs]
    assert len(set(goals)) == num_tasks
    shapes = set()
    for i in range(num_tasks):
        env = suite.make_env(i, seed=i)
        obs, info = env.reset(seed=i)
        assert info["goal"] == goals[i]
        shapes.add(obs.shape)
    (shape,) = shapes
    assert shape[0] >= 24 and shape[1] >= 24 and shape[2] == 3


def _exhaustive_best_return(env, cell, steps_left, starts):
    """Expectimax over every action sequence, stepping the real environment; a goal forks over the restarts."""
    if steps_left == 0:
        return 0.0
    best = -np.inf
    for action in range(tr.NUM_ACTIONS):
        outcomes = []
        for start in starts:
            env._cell, env._t = cell, env.episode_length - steps_left
            env._random_start = lambda start=start: start
            _, reward, terminated, truncated, _ = env.step(action)
            assert not terminated and truncated == (steps_left == 1)
            outcomes.append(reward + _exhaustive_best_return(env, env._cell, steps_left - 1, starts))
            if reward == 0:
                break  # no restart: the outcome does not depend on the start drawn
        best = max(best, float(np.mean(outcomes)))
    return best


@pytest.mark.parametrize("grid,goal,horizon", [
    (("####", "#..#", "#..#", "####"), 3, 6),  # 2x2 room, goal in a corner
    (("#####", "#...#", "##.##", "#####"), 1, 5),  # a T: the goal is the junction
    (("#####", "#...#", "##.##", "#####"), 0, 5),
])
def test_optimal_return_matches_exhaustive_search(monkeypatch, grid, goal, horizon):
    monkeypatch.setitem(tr.LAYOUTS, "tiny", grid)
    tr.get_layout.cache_clear()
    try:
        layout = tr.get_layout("tiny")
        env = tr.TwoRoomsEnv(layout="tiny", goal=goal, observation="index", episode_length=horizon, image_size=40)
        env.reset(seed=0)
        starts = [c for c in range(layout.num_cells) if c != goal]
        values = tr.optimal_values(layout, goal, horizon)
        for t in range(horizon + 1):
            for c in starts:
                assert values[t, c] == pytest.approx(_exhaustive_best_return(env, c, horizon - t, starts))
        expected = np.mean([_exhaustive_best_return(env, c, horizon, starts) for c in starts])
        assert tr.optimal_return(layout, goal, horizon) == pytest.approx(expected)
        assert expected > 0
    finally:
        tr.get_layout.cache_clear()


def test_greedy_play_of_the_optimum_reaches_it_and_random_play_does_not():
    suite = make_suite("two_rooms_small")
    optimum = suite.optimal_returns()
    assert list(optimum) == list(suite.task_names)
    for i, task in enumerate(suite.task_names):
        env = suite.make_env(i).unwrapped
        values = tr.optimal_values(env.layout, env.goal, env.episode_length)
        starts = np.arange(env.layout.num_cells) != env.goal
        restart = values[1:, starts].mean(-1)  # value of a fresh start with T - t - 1 steps left
        greedy, rng = [], np.random.default_rng(i)
        random_returns = []
        _, info = env.reset(seed=i)
        for _ in range(300):
            total, done = 0.0, False
            while not done:
                nxt = env.layout.next_cell[env._cell]
                q = np.where(nxt == env.goal, 1.0 + restart[env._t], values[env._t + 1, nxt])
                _, r, _, done, _ = env.step(int(np.argmax(q)))
                total += r
            greedy.append(total)
            env.reset()
        for _ in range(100):
            total, done = 0.0, False
            while not done:
                _, r, _, done, _ = env.step(int(rng.integers(4)))
                total += r
            random_returns.append(total)
            env.reset()
        se = np.std(greedy) / np.sqrt(len(greedy))
        assert abs(np.mean(greedy) - optimum[task]) < 4 * se + 1e-9
        assert np.mean(random_returns) < optimum[task] / 2
    assert make_suite("two_rooms_small_goal9").optimal_returns() == {"two_rooms_small_goal9": optimum[
        "two_rooms_small_goal9"]}


def test_a_suite_without_the_hook_has_no_optimum():
    s = make_suite("two_rooms_small")
    plain = Suite(name=s.name, task_names=s.task_names, env_ids=s.env_ids, env_kwargs=s.env_kwargs)
    assert plain.optimal_returns() is None and plain.subset([s.task_names[0]]).optimal_returns() is None


def test_docs_give_the_colours_the_image_uses():
    import os

    docs = open(os.path.join(os.path.dirname(__file__), "..", "docs", "environments.md")).read()
    for name, colour in zip((*tr.ACTION_NAMES, "none"), tr._ACTION_COLOURS.tolist(), strict=True):
        assert f"| {name} | " in docs and f"({', '.join(map(str, colour))}) |" in docs
    for colour in (tr._WALL, tr._AGENT, tr._WHITE):
        assert f"({', '.join(map(str, colour.tolist()))})" in docs
    for name in ("two_rooms", "two_rooms_small"):
        suite = make_suite(name)
        assert f"`{suite.task_names[0]}`" in docs
        size = suite.env_kwargs[0]["image_size"]
        assert f"| {size}x{size} |" in docs


def test_preview_writes_observation_strips_of_two_room_tasks(tmp_path):
    from PIL import Image

    from distral_tf.preview import preview_task

    suite = make_suite("two_rooms_small")
    (path,) = preview_task(suite, 0, tmp_path, frames=3, every=2, seed=0)
    strip = np.asarray(Image.open(path))
    assert strip.shape == (2 * 44, 2 * 3 * 44, 3)  # three 40x40 observations, padded, at 2x
    assert np.all(strip == tr._AGENT, axis=-1).any()
