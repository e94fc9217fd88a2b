"""The algorithm registry is the one source of the algorithms' names, labels, coefficients and pi_0.

Every consumer (the sweep, the run's flags, the report's labels and line styles, the
agent's columns, transfer) is checked against the registry's declarations here.
"""

import dataclasses

import pytest

from distral_tf import algorithms, report, sweep
from distral_tf.model.algorithm_spec import BASELINE_BETA, LOSS_TERM_NAMES, Algorithm, Architecture, DistilledPolicy
from distral_tf.reporting import style
from distral_tf.training import budgets
from distral_tf.training import tensorboard_metadata as summaries
from distral_tf.training import warm_start as transfer


def test_sweep_flags_and_report_list_the_registry_algorithms_in_its_order():
    from absl import flags as absl_flags

    from flags import training  # noqa: F401  (defines the flags)

    names = list(algorithms.NAMES)
    assert sweep.parse_algos("all") == names
    assert sweep.parse_algos("klent_2col, a3c") == ["klent_2col", "a3c"]
    with pytest.raises(ValueError, match="choose from all, " + ", ".join(names)):
        sweep.parse_algos("a4c")
    assert list(absl_flags.FLAGS["algo"].parser.enum_values) == names
    assert sorted(names[::-1], key=style.sort_key) == names
    colors = [style.color(name) for name in names]
    assert colors == [algorithms.get(name).color for name in names] and len(set(colors)) == len(names)
    # The report's colours and order as they were before they moved into the registry rows.
    assert dict(zip(names, colors, strict=True)) == {
        "a3c": "#1f77b4", "a3c_multitask": "#ff7f0e", "a3c_2col": "#8c564b", "kl_1col": "#9467bd",
        "kl_2col": "#d62728", "klent_1col": "#17becf", "klent_2col": "#2ca02c"}
    assert names == ["a3c", "a3c_multitask", "a3c_2col", "kl_1col", "kl_2col", "klent_1col", "klent_2col"]


def test_report_labels_and_line_styles_come_from_the_registry():
    labels = [algo.label for algo in algorithms.ALGORITHMS.values()]
    assert len(set(labels)) == len(labels) and all(labels)
    for name, algo in algorithms.ALGORITHMS.items():
        assert style.display_name(name) == algo.label
        assert style.linestyle(name) == ("-" if algo.kl else "--")
        assert style.policy_label(name, "task") == algo.label
        untrained = algo.distilled_policy is DistilledPolicy.UNTRAINED
        assert (style.policy_label(name, "distilled") != algo.label) == untrained
    assert style.display_name("not_registered") == "not_registered"
    # The report explains the distilled-policy panels of every algorithm whose pi_0 is not distilled.
    definition = next(d for d in report.definitions(10, 0.1) if d.startswith("**Distilled policy**"))
    for algo in algorithms.ALGORITHMS.values():
        mentioned = f"for {algo.label} {algo.distilled_policy.meaning}" in definition
        assert mentioned == (algo.distilled_policy is not DistilledPolicy.TRAINED), algo.name


def test_sweep_help_describes_every_algorithm():
    help_text = sweep.algos_help()
    for algo in algorithms.ALGORITHMS.values():
        assert f"{algo.name} ({algo.description})" in help_text


@pytest.mark.parametrize("name", algorithms.NAMES)
def test_coefficients_are_those_the_registry_declares(name):
    algo = algorithms.get(name)
    coeffs = algo.coefficients(0.02)
    assert coeffs.alpha == algo.default_alpha
    if algo.kl:
        assert (coeffs.beta, coeffs.entropy_bonus) == (pytest.approx(50.0), 0.0)
        assert algo.coefficients(0.02, alpha=0.3).alpha == 0.3
    else:
        assert (coeffs.beta, coeffs.entropy_bonus) == (BASELINE_BETA, 0.02)
        with pytest.raises(ValueError, match="alpha does not apply"):
            algo.coefficients(0.02, alpha=0.3)
    # a3c_2col's logits are h0 + f: eq. 8 with alpha = beta = 1, declared in its entry.
    if name == "a3c_2col":
        assert (coeffs.alpha, coeffs.beta) == (1.0, 1.0)


@pytest.mark.parametrize("name", algorithms.NAMES)
def test_agent_columns_and_pi0_follow_the_registry(make_agent, name):
    algo = algorithms.get(name)
    agent = make_agent(name)
    assert (agent.distilled is not None) == algo.has_distilled_column
    shared = algo.distilled_policy is DistilledPolicy.SHARED
    assert agent.distilled_column() is (agent.task_columns[0] if shared else agent.distilled)
    if algo.has_distilled_column:
        trained = {id(v) for v in agent.trainable}
        distilled_trained = all(id(v) in trained for v in agent.distilled.trainable_variables)
        assert distilled_trained == algo.uses_distilled
    assert transfer.uses_distilled(name) == algo.uses_distilled
    assert (algo.distilled_policy in transfer.TRANSFERABLE) == algo.uses_distilled


@pytest.mark.parametrize("change, message", [
    ({"kl": True}, "has distilled policy trained, not untrained"),
    ({"architecture": Architecture.MULTITASK}, "has distilled policy shared"),
    ({"default_alpha": 1.5}, r"default_alpha must be in \[0, 1\]"),
])
def test_an_entry_that_contradicts_itself_is_refused(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(algorithms.get("a3c"), **change)


def test_registry_names_are_unique_and_lookup_errors_list_them():
    entries: list[Algorithm] = list(algorithms.ALGORITHMS.values())
    assert [a.name for a in entries] == list(algorithms.NAMES)
    with pytest.raises(ValueError, match="; choose one of a3c, a3c_multitask"):
        algorithms.get("distral")


def test_registry_refuses_a_second_row_with_a_name_label_or_colour_it_has():
    a3c = algorithms.get("a3c")
    for change in ({}, {"name": "a3c_again"}, {"name": "a3c_again", "label": "A3C again"}):
        with pytest.raises(ValueError, match="is already that of a3c"):
            algorithms.register(dataclasses.replace(a3c, **change))
    assert algorithms.NAMES[0] == "a3c" and "a3c_again" not in algorithms.ALGORITHMS


@pytest.fixture
def eighth_algorithm():
    """A row registered as a new algorithm would be, and removed afterwards."""
    row = Algorithm(name="klent_3col", label="KL+ent 3col", architecture=Architecture.TWO_COLUMN, kl=True,
                    default_alpha=0.25, distilled_policy=DistilledPolicy.TRAINED,
                    description="A made-up eighth algorithm.", color="#000000")
    algorithms.register(row)
    yield row
    algorithms.unregister(row.name)


def test_one_registry_row_is_all_an_algorithm_needs(eighth_algorithm):
    from distral_tf.training.config import TrainConfig

    row, name = eighth_algorithm, eighth_algorithm.name
    assert algorithms.NAMES[-1] == name and algorithms.get(name) is row
    # Choices and messages of the command lines.
    assert sweep.parse_algos("all")[-1] == name and f"{name} ({row.description})" in sweep.algos_help()
    assert name in algorithms.with_kl()
    alpha_help = next(f for f in dataclasses.fields(TrainConfig) if f.name == "alpha").metadata["help"]()
    assert f"0.25 for {name}" in alpha_help
    # The report: last in every table and legend, in its own colour, solid as Distral is.
    assert sorted([name, "klent_2col", "a3c"], key=style.sort_key) == ["a3c", "klent_2col", name]
    assert (style.display_name(name), style.color(name), style.linestyle(name)) == ("KL+ent 3col", "#000000", "-")
    assert style.policy_label(name, "distilled") == "KL+ent 3col"
    # Loss terms, summaries and the speed the sweep estimates its wall time with.
    coeffs = row.coefficients(0.01)
    assert row.loss_term_names(coeffs) == ("total", "policy_gradient", "value", "distillation")
    assert summaries.logged_metrics(row, coeffs, evaluates_distilled=True)["loss"] == row.loss_term_names(coeffs)
    assert budgets.speed_class(name) == "two_column"
    assert budgets.steps_per_core_second(name, "hogwild") == budgets.steps_per_core_second("kl_2col", "hogwild")
    assert transfer.uses_distilled(name)


@pytest.mark.parametrize("name", algorithms.NAMES)
def test_loss_terms_and_speed_class_derive_from_the_row(name):
    algo = algorithms.get(name)
    coeffs = algo.coefficients(0.01)
    names = algo.loss_term_names(coeffs)
    assert set(names) <= set(LOSS_TERM_NAMES) and names[:2] == ("total", "policy_gradient")
    assert ("distillation" in names) == algo.kl and ("entropy_bonus" in names) == (not algo.kl)
    one_column = name in ("a3c", "a3c_multitask")  # a single network trains per update
    assert budgets.speed_class(name) == ("one_column" if one_column else "two_column")
