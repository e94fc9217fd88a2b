"""The algorithm registry is the one source of the algorithms' names, labels, coefficients and pi_0.

Every consumer (the sweep, the run's flags, the report's labels and line styles, the
agent's columns, transfer) is checked against the registry's declarations here.
"""

import dataclasses

import pytest

from distral_tf import algorithms, report, sweep, transfer
from distral_tf.algorithm_spec import BASELINE_BETA, Algorithm, Architecture, DistilledPolicy
from distral_tf.reporting import style


def test_sweep_flags_and_report_list_the_registry_algorithms_in_its_order():
    from absl import flags as absl_flags

    from flags import training  # noqa: F401  (defines the flags)

    names = list(algorithms.NAMES)
    assert sweep.parse_algos("all") == names
    assert sweep.parse_algos("klent_2col, a3c") == ["klent_2col", "a3c"]
    with pytest.raises(ValueError, match="choose from all, " + ", ".join(names)):
        sweep.parse_algos("a4c")
    assert list(absl_flags.FLAGS["algo"].parser.enum_values) == names
    assert list(style.ALGORITHMS) == names
    assert sorted(names[::-1], key=style.sort_key) == names
    assert set(style.COLORS) == set(names) and len(set(style.COLORS.values())) == len(names)


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
