"""TensorBoard's own plugins see the custom-scalars layout and the HParams data of a sweep."""

import json
import os

import pytest
import werkzeug.test
from tensorboard import context as tb_context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.custom_scalar import custom_scalars_plugin
from tensorboard.plugins.hparams import hparams_plugin
from tensorboard.plugins.scalar import scalars_plugin

from distral_tf.training import tensorboard_metadata as summaries

TASKS = ["maze_0", "maze.1"]  # a regex metacharacter in a task name
METRICS = ["episode_return", "episode_length"]
RETURN_TAGS = [f"task/{t}/episode_return" for t in TASKS]
RUNS = {"kl_2col-lr1e-4-ent1e-2-s0": 1e-4, "kl_2col-lr5e-4-ent1e-2-s0": 5e-4}


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    import tensorflow as tf

    root = tmp_path_factory.mktemp("tb")
    for i, (name, lr) in enumerate(RUNS.items()):
        logdir = str(root / name)
        hparams = {"algo": "kl_2col", "learning_rate": lr, "entropy_cost": 0.01, "seed": 0,
                   "alpha": None, "eval_greedy": False}
        for _ in range(2):  # as on a resumed run: the second call writes nothing
            layout_file = summaries.write_custom_scalars_layout(logdir, TASKS, METRICS)
            hparams_file = summaries.write_hparams(logdir, hparams, RETURN_TAGS)
        assert layout_file.endswith(summaries.LAYOUT_SUFFIX)
        assert hparams_file.endswith(summaries.HPARAMS_SUFFIX)
        writer = tf.summary.create_file_writer(logdir)
        with writer.as_default():
            for step in range(0, 500, 100):
                for j, task in enumerate(TASKS):
                    for policy in ("task", "distilled"):
                        tf.summary.scalar(f"{policy}/{task}/episode_return", (i + 1) * step + j, step=step)
                        tf.summary.scalar(f"{policy}/{task}/episode_length", 10.0, step=step)
        writer.close()
    summaries.write_hparams_config(str(root), {"algo": ["kl_2col"], "learning_rate": list(RUNS.values()),
                                               "seed": [0]}, RETURN_TAGS)
    return str(root)


@pytest.fixture(scope="module")
def tb(sweep_dir):
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(sweep_dir)
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, sweep_dir)
    plugins = {}  # as in TensorBoard's server: the custom-scalars plugin reads through the scalars plugin
    context = base_plugin.TBContext(logdir=sweep_dir, data_provider=provider, multiplexer=multiplexer,
                                    plugin_name_to_instance=plugins)
    plugins[scalars_plugin.ScalarsPlugin.plugin_name] = scalars_plugin.ScalarsPlugin(context)
    return context


def test_each_run_holds_one_layout_and_one_hparams_file(sweep_dir):
    for name in RUNS:
        files = os.listdir(os.path.join(sweep_dir, name))
        assert sum(f.endswith(summaries.LAYOUT_SUFFIX) for f in files) == 1
        assert sum(f.endswith(summaries.HPARAMS_SUFFIX) for f in files) == 1


def test_custom_scalars_layout_charts_compare_tasks(tb):
    ctx = tb_context.RequestContext()
    plugin = custom_scalars_plugin.CustomScalarsPlugin(tb)
    layout = json.loads(plugin.layout_impl(ctx, ""))
    by_metric, by_task = layout["category"]
    # The two runs' identical layouts are merged without duplicates.
    assert [c["title"] for c in by_metric["chart"]] == [
        "episode_return (task policies)", "episode_return (distilled policy)",
        "episode_length (task policies)", "episode_length (distilled policy)"]
    assert len(by_task["chart"]) == len(METRICS) * len(TASKS)

    # Each chart's regex, resolved by the plugin itself, selects exactly the per-task tags.
    (chart,) = [c for c in by_metric["chart"] if c["title"] == "episode_return (task policies)"]
    for run in RUNS:
        (regex,) = chart["multiline"]["tag"]
        response = plugin.scalars_impl(ctx, run, regex, "")
        assert response["regex_valid"]
        assert sorted(response["tag_to_events"]) == sorted(RETURN_TAGS)
        assert len(response["tag_to_events"]["task/maze.1/episode_return"]) == 5
    (chart,) = [c for c in by_task["chart"] if c["title"] == "maze.1: episode_return"]
    response = plugin.scalars_impl(ctx, next(iter(RUNS)), chart["multiline"]["tag"][0], "")
    assert sorted(response["tag_to_events"]) == ["distilled/maze.1/episode_return",
                                                 "task/maze.1/episode_return"]


def test_per_task_scalars_are_visible(tb):
    plugin = scalars_plugin.ScalarsPlugin(tb)
    for run in RUNS:
        tags = plugin.index_impl(tb_context.RequestContext(), "")[run]
        assert {f"{p}/{t}/{m}" for p in ("task", "distilled") for t in TASKS for m in METRICS} <= set(tags)


def _post(app, body):
    response = werkzeug.test.Client(app).post("/", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.loads(response.get_data(as_text=True))


def test_hparams_tab_lists_runs_hparams_and_metrics(tb):
    apps = hparams_plugin.HParamsPlugin(tb).get_plugin_apps()
    experiment = _post(apps["/experiment"], {"experimentName": ""})
    infos = {h["name"]: h for h in experiment["hparamInfos"]}
    assert {"algo", "learning_rate", "seed"} <= set(infos)
    assert infos["learning_rate"]["domainDiscrete"] == sorted(RUNS.values())
    assert sorted(m["name"]["tag"] for m in experiment["metricInfos"]) == sorted(RETURN_TAGS)

    groups = _post(apps["/session_groups"], {
        "startIndex": 0, "sliceSize": 10,
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [{"metric": {"tag": RETURN_TAGS[0]}}],
    })["sessionGroups"]
    assert sorted(g["name"] for g in groups) == sorted(RUNS)
    for g in groups:
        assert g["hparams"]["learning_rate"] == RUNS[g["name"]]
        assert g["hparams"]["alpha"] == "None" and g["hparams"]["eval_greedy"] is False
        values = {m["name"]["tag"]: m["value"] for m in g["metricValues"]}
        i = list(RUNS).index(g["name"])
        # The metric value is the last logged scalar: step 400 of task 0.
        assert values[RETURN_TAGS[0]] == pytest.approx((i + 1) * 400)


def test_hparam_values_are_normalised():
    values = summaries.normalize_hparams({"a": None, "b": [1, 2], "c": float("inf"), "d": 3, "e": "x"})
    assert values == {"a": "None", "b": "1,2", "c": "inf", "d": 3, "e": "x"}


LOSS_PARTS = ("total", "policy_gradient", "value", "entropy_bonus", "distillation")


@pytest.mark.parametrize("name", ["a3c", "a3c_multitask", "a3c_2col", "kl_1col", "klent_2col"])
def test_logged_loss_terms_are_those_that_are_not_constant_zeros(name):
    import numpy as np
    import tensorflow as tf

    from distral_tf import algorithms
    from distral_tf.model import objective

    algo = algorithms.get(name)
    coeffs = algo.coefficients(entropy_cost=0.01)
    rng = np.random.default_rng(0)
    t, b, a = 5, 3, 4
    logits = lambda: tf.constant(rng.normal(size=(t + 1, b, a)), tf.float32)  # noqa: E731
    distilled = logits() if algo.uses_distilled else None
    terms = objective.loss_terms(
        algo, coeffs, task_logits=logits(), values=tf.constant(rng.normal(size=(t + 1, b)), tf.float32),
        distilled_logits=distilled, actions=tf.constant(rng.integers(a, size=(t, b)), tf.int32),
        rewards=tf.constant(rng.normal(size=(t, b)), tf.float32), dones=tf.zeros((t, b)),
        task_column_logits=logits())
    nonzero = {k for k in LOSS_PARTS if float(terms[k]) != 0.0}
    assert set(algo.loss_term_names(coeffs)) == nonzero
    assert ("distillation" in nonzero) == algo.kl
    metrics = summaries.logged_metrics(algo, coeffs, evaluates_distilled=True)
    diagnostics = {k for k in ("entropy_distilled", "kl_task_distilled") if k in terms}
    assert diagnostics == set(metrics["task"]) & {"entropy_distilled", "kl_task_distilled"}


def _chart_regexes(layout) -> list[str]:
    return [c.multiline.tag[0] for category in layout.category for c in category.chart]


def test_every_chart_of_a_runs_layout_matches_a_logged_tag():
    import re

    from distral_tf import algorithms

    for name in ("a3c", "kl_2col"):
        algo = algorithms.get(name)
        coeffs = algo.coefficients(entropy_cost=0.01)
        for evaluates in (True, False):
            metrics = summaries.logged_metrics(algo, coeffs, evaluates_distilled=evaluates)
            tags = [f"{p}/{t}/{m}" for p, ms in metrics.items() for t in TASKS for m in ms]
            layout = summaries.custom_scalars_layout(TASKS, metrics)
            for regex in _chart_regexes(layout):
                assert any(re.match(regex, tag) for tag in tags), (name, regex)
            titles = [c.title for category in layout.category for c in category.chart]
            assert ("distillation (loss)" in titles) == algo.kl
            assert any("distilled policy" in t for t in titles) == evaluates
            assert len(layout.category) == (2 if evaluates else 1)  # task vs distilled only if both exist


def test_an_outdated_layout_is_replaced_and_a_current_one_kept(tmp_path):
    logdir = str(tmp_path)
    old = summaries.write_custom_scalars_layout(logdir, TASKS, ["episode_return", "kl_task_distilled"])
    current = {"task": ("episode_return",), "loss": ("total",)}
    new = summaries.write_custom_scalars_layout(logdir, TASKS, current)
    assert not os.path.exists(old) and os.path.exists(new)
    assert summaries.write_custom_scalars_layout(logdir, TASKS, current) == new
    files = [f for f in os.listdir(logdir) if f.endswith(summaries.LAYOUT_SUFFIX)]
    assert len(files) == 1
    assert _chart_regexes(summaries._read_layout(new)) == _chart_regexes(
        summaries.custom_scalars_layout(TASKS, current))
