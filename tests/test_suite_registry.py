"""A suite registers once, and everything else (``--suite``, memory, budgets, optimum, preview) follows from it."""

import dataclasses
import subprocess
import sys

import gymnasium as gym
import pytest

from distral_tf.envs import suites
from distral_tf.envs.suites import Suite, make_suite, register_suite, suite_names
from distral_tf.training import budgets

ALL_SUITES = ("two_rooms", "two_rooms_small", "doom_mazes", "doom_mazes_small", "doom_navigation", "doom_lasertag",
              "basic", "basic_own_buttons", "my_way_home", "dmlab_mazes", "dmlab_navigation", "dmlab_lasertag")


def test_every_suite_is_declared_by_its_module_and_registered_once():
    assert sorted(suite_names()) == sorted(ALL_SUITES)
    declared = {m.module: m for m in suites.declared_modules()}
    assert set(declared) == {"distral_tf.envs.two_rooms", "distral_tf.envs.doom.suites", "distral_tf.envs.dmlab"}
    for module in declared.values():
        for env_id in module.environments:
            assert env_id in gym.registry
        for name in module.suites:
            suite = make_suite(name)
            assert suite.name == name and set(suite.env_ids) <= set(module.environments)


@pytest.mark.parametrize("name, memory", [("two_rooms_small", 2 << 20), ("doom_mazes", 24 << 20), ("basic", 24 << 20),
                                          ("dmlab_mazes", 64 << 20), ("two_rooms_small_goal7,two_rooms_small_goal9",
                                                                      2 << 20), ("vizdoom_my_way_home", 24 << 20)])
def test_memory_per_environment_is_the_suites(name, memory):
    from flags import training

    assert make_suite(name).memory_per_env_bytes == memory
    assert training.memory_per_env_bytes(name) == memory


def test_episode_lengths_for_budgets_come_from_the_suite_or_its_tasks():
    assert budgets.longest_episode_steps(make_suite("two_rooms_small")) == 40
    assert budgets.longest_episode_steps(make_suite("doom_mazes")) == 1350
    assert budgets.longest_episode_steps(make_suite("dmlab_navigation")) == 1800  # declared by the suite


def test_making_a_two_rooms_suite_imports_no_engine_and_no_other_suite_module():
    code = ("import sys; from distral_tf.envs import make_suite; make_suite('two_rooms_small'); "
            "print(sorted(m for m in sys.modules if m.startswith(('vizdoom', 'deepmind_lab', 'distral_tf.envs.')))); "
            "make_suite('two_rooms_small_goal7'); "  # task names are looked up in every suite
            "print(sorted(m for m in sys.modules if m.startswith(('vizdoom', 'deepmind_lab'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.split("\n")[:2] == ["['distral_tf.envs.suites', 'distral_tf.envs.two_rooms']", "[]"], out.stdout


@pytest.fixture
def new_suite():
    """A suite registered as a new one would be (on the two-room environment), removed afterwards."""
    base = make_suite("two_rooms_small")

    def provider(name):
        return dataclasses.replace(base, name=name, task_names=tuple(f"fake_{t}" for t in base.task_names),
                                   memory_per_env_bytes=5 << 20, max_episode_steps=77,
                                   optimal_return=lambda kwargs: 1.5)

    register_suite("fake_rooms", provider)
    yield "fake_rooms"
    suites.unregister_suite("fake_rooms")


def test_a_registered_suite_is_all_a_new_suite_needs(new_suite, tmp_path):
    from distral_tf.reporting import optimum, random_policy
    from flags import training

    assert suite_names()[-1] == new_suite
    suite = make_suite(new_suite)
    assert suite.num_tasks == 3 and suite.name == new_suite
    # Its tasks by name, with everything it declares.
    first = suite.task_names[0]
    subset = make_suite(first)
    assert subset.task_names == (first,)
    assert (subset.memory_per_env_bytes, subset.max_episode_steps) == (5 << 20, 77)
    assert training.memory_per_env_bytes(new_suite) == 5 << 20
    assert budgets.longest_episode_steps(subset) == 77
    assert optimum.optimal_returns(first)[0] == {first: 1.5}
    returns, _ = random_policy.reference_returns(new_suite, str(tmp_path), episodes=2, seed=0)
    assert set(returns) == set(suite.task_names)
    with pytest.raises(ValueError, match="already registered"):
        register_suite(new_suite, lambda name: suite)


def test_a_suite_module_declares_its_suites_as_literals(tmp_path):
    module = tmp_path / "made_up.py"
    module.write_text("SUITES = ('a', 'b')\nENVIRONMENTS = {'x/Y-v0': 'pkg.mod:Env'}\n"
                      "def suite(name):\n    import not_installed_engine\n")
    declared = suites._declarations(str(module), "pkg.made_up")
    assert (declared.suites, declared.environments) == (("a", "b"), {"x/Y-v0": "pkg.mod:Env"})
    module.write_text("NAMES = ('a',)\nSUITES = NAMES\n")
    with pytest.raises(ValueError, match="must be a literal"):
        suites._declarations(str(module), "pkg.made_up")


def test_unknown_names_list_the_registered_suites():
    with pytest.raises(ValueError, match="Unknown suite or task names 'bogus'; suites are .*two_rooms_small"):
        make_suite("bogus")


def test_subsets_keep_every_declared_field():
    suite = Suite(name="s", task_names=("a", "b"), env_ids=("e", "e"), env_kwargs=({}, {}), frames_per_step=4,
                  memory_per_env_bytes=3, max_episode_steps=9, preview_env_kwargs={"k": 1}, reward_scale=0.5)
    subset = suite.subset(["b"])
    assert dataclasses.replace(subset, name="s", task_names=suite.task_names, env_ids=suite.env_ids,
                               env_kwargs=suite.env_kwargs) == suite
