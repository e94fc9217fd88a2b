"""Flags of ``python -m distral_tf.run`` and their validators.

Every field of :class:`~distral_tf.training.config.TrainConfig` is a flag of the same name,
defined from the field's type and metadata (help text, choices, bounds): the
configuration is written once, in ``distral_tf/training/config.py``. Each invalid value stops
the program before anything is written, with one line naming the flag and what is
allowed. The rules that relate several flags, the suite and the run directory are
checked here.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import typing

from absl import flags

from distral_tf import algorithms
from distral_tf.envs import suites
from distral_tf.training import presets
from distral_tf.training.config import MAX_WORKERS_PER_TASK, Interval, TrainConfig, UpTo
from flags import cli


def _number(value) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,g}"


def _up_to(name: str, bound: UpTo):
    sign = ">" if bound.strict else ">="

    def check(value):
        if value is None:
            raise flags.ValidationError(f"--{name} is required.")
        if isinstance(value, float) and not math.isfinite(value):
            raise flags.ValidationError(f"--{name} must be a finite number {sign} 0, got {value}.")
        if not (value > 0 if bound.strict else value >= 0):
            raise flags.ValidationError(f"--{name} must be {sign} 0, got {value:g}.")
        if value > bound.limit:
            raise flags.ValidationError(
                f"--{name}={_number(value)} is above its limit of {_number(bound.limit)}.")
        return True

    return check


def _in_interval(name: str, bound: Interval, optional: bool):
    def check(value):
        if value is None:
            return optional
        return bound.contains(value)

    return check, f"--{name} must be in {bound.describe()}."


def _resolved(value):
    return value() if callable(value) else value


def _define(field: dataclasses.Field, kind: type) -> flags.FlagHolder:
    """The flag of one ``TrainConfig`` field, from its type and metadata (help, choices, bound)."""
    meta = field.metadata
    default = meta.get("flag_default", field.default)
    help_text, choices = _resolved(meta["help"]), _resolved(meta["choices"])
    if choices is not None:
        return flags.DEFINE_enum(field.name, default, choices, help_text)
    define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
              str: flags.DEFINE_string}.get(kind)
    if define is None:
        raise TypeError(f"TrainConfig.{field.name}: no flag type for {kind!r}.")
    return define(field.name, default, help_text)


def _flag_type(annotation) -> type:
    """``int`` for ``int``, ``float`` for ``float | None``."""
    kinds = [k for k in typing.get_args(annotation) if k is not type(None)] or [annotation]
    return kinds[0]


_TYPES = typing.get_type_hints(TrainConfig)
# Every field of TrainConfig as a flag of the same name.
FLAGS_BY_FIELD: dict[str, flags.FlagHolder] = {
    field.name: _define(field, _flag_type(_TYPES[field.name])) for field in dataclasses.fields(TrainConfig)}

for _field in dataclasses.fields(TrainConfig):  # bounds in the order the fields are declared
    _bound = _field.metadata["bound"]
    if isinstance(_bound, UpTo):
        flags.register_validator(_field.name, _up_to(_field.name, _bound))
    elif isinstance(_bound, Interval):
        flags.register_validator(_field.name, *_in_interval(_field.name, _bound, _field.default is None))


@flags.multi_flags_validator(["algo", "alpha"], message="--alpha applies only to the Distral algorithms "
                             f"({', '.join(algorithms.with_kl())}); A3C baselines have no KL term.")
def _alpha_only_for_distral(values):
    return values["alpha"] is None or algorithms.get(values["algo"]).kl


@flags.multi_flags_validator(["algo", "entropy_cost"], message="--entropy_cost is 1/beta for the Distral "
                             "algorithms and must be > 0.")
def _distral_entropy_cost(values):
    return not algorithms.get(values["algo"]).kl or values["entropy_cost"] > 0


@flags.multi_flags_validator(["init_from", "freeze_distilled"],
                             message="--freeze_distilled keeps a trained pi_0 fixed and needs --init_from=RUN.")
def _freeze_needs_init(values):
    return not values["freeze_distilled"] or bool(values["init_from"])


def _validate_suite(value):
    if not value or not value.strip():
        raise flags.ValidationError("--suite must name a suite or tasks, got an empty value.")
    names = [t.strip() for t in value.split(",")]
    if "" in names and len(names) > 1:
        raise flags.ValidationError(f"--suite={value} has an empty task name.")
    repeated = sorted({t for t in names if names.count(t) > 1})
    if repeated:
        raise flags.ValidationError(f"--suite={value} names {', '.join(repeated)} more than once; "
                                    "each task may appear once.")
    try:
        suites.make_suite(value)
    except ValueError as e:
        raise flags.ValidationError(str(e)) from None
    except ImportError as e:
        raise flags.ValidationError(f"--suite={value} needs a module that is not installed: {e}") from None
    return True


flags.register_validator("suite", _validate_suite)


def logdir_problem(path: str) -> str | None:
    """Why ``path`` cannot be a run directory, or None; it is tried by creating (and removing) a file there.

    A directory that does not exist yet is tried in its nearest existing ancestor; nothing is left behind.
    """
    if not path.strip():
        return "--logdir is empty; give a directory, or leave the flag out for the default."
    if "\0" in path:
        return "--logdir contains a NUL character."
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"--logdir={path} is not a writable directory ({existing} is a file)."
    try:
        if existing == os.path.abspath(path):
            tempfile.TemporaryFile(dir=existing).close()
        else:
            os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".write_test."))
    except OSError as e:
        return f"--logdir={path} is not a writable directory ({e.strerror or e} in {existing})."
    return None


def _validate_logdir(value):
    problem = None if value is None else logdir_problem(value)
    if problem:
        raise flags.ValidationError(problem)
    return True


flags.register_validator("logdir", _validate_logdir)


def _preset_in(argv) -> str:
    """The value of the last ``--preset=NAME`` (or ``--preset NAME``) in ``argv``, else ''."""
    name = ""
    for i, arg in enumerate(argv[1:], start=1):
        if arg.startswith("--preset="):
            name = arg.split("=", 1)[1]
        elif arg == "--preset" and i + 1 < len(argv):
            name = argv[i + 1]
    return name


_FIELD_DEFAULTS = {f.name: f.metadata.get("flag_default", f.default) for f in dataclasses.fields(TrainConfig)}


def parse(argv):
    """Parses the command line as ``python -m distral_tf.run`` does (see :func:`flags.cli.parse_flags_or_exit`).

    A ``--preset`` gives the defaults of the flags it sets before the flags are parsed and
    checked, so that flags given explicitly override it and every check sees the values used.
    """
    preset = presets.PRESETS.get(_preset_in(argv))
    try:
        for name in presets.PRESET_FIELDS:
            flags.FLAGS.set_default(name, preset.flags()[name] if preset else _FIELD_DEFAULTS[name])
    except flags.Error as e:
        cli.fail(cli.plain_flag_error(str(e)))
    return cli.parse_flags_or_exit(argv)


def memory_per_env_bytes(suite_name: str) -> int:
    """Estimated memory of one environment of ``suite_name``, as its suite declares it."""
    return suites.make_suite(suite_name).memory_per_env_bytes


def machine_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 1 << 62


@flags.multi_flags_validator(["suite", "workers_per_task"])
def _workers_fit_in_memory(values):
    workers, suite_name = values["workers_per_task"], values["suite"]
    if not workers or workers <= 0 or workers > MAX_WORKERS_PER_TASK:
        return True  # reported by the flag's own validator
    try:
        num_tasks = suites.make_suite(suite_name).num_tasks
        per_env = memory_per_env_bytes(suite_name)
    except (ValueError, ImportError):
        return True  # reported by --suite's validator
    need, have = num_tasks * workers * per_env, machine_memory_bytes()
    if need > have:
        raise flags.ValidationError(
            f"--workers_per_task={workers}: {num_tasks} tasks x {workers} environments need about "
            f"{need / 2**30:,.1f} GiB ({per_env >> 20} MiB each), more than this machine's "
            f"{have / 2**30:,.1f} GiB; at most {have // (num_tasks * per_env):,} workers per task fit.")
    return True


def config_from_flags() -> TrainConfig:
    """The run's configuration from the parsed flags (every field from its flag)."""
    values = {name: holder.value for name, holder in FLAGS_BY_FIELD.items()}
    if values["logdir"] is None:
        name = f"{values['algo']}-{values['suite'].replace(',', '+')}-s{values['seed']}"
        values["logdir"] = os.path.join("runs", name)
    return TrainConfig(**values)
