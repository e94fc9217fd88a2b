"""Shared command-line behaviour of the entry points: one prologue, quiet logs, and one line per bad input.

Every program (``python -m distral_tf.run``, ``.sweep``, ``.report``, ``.evaluate``, ``.export``,
``distral_tf.experiments.*``, ``distral_tf.preview``, the benchmarks and drills) starts with
:func:`run`, which is ``absl.app.run`` with the prologue they share. A bad flag value, a stray
positional argument (:func:`refuse_positional`) or an ``app.UsageError`` ends the program with one
line ``error: ...`` (exit status 2; asking for help exits with 0). Log lines have the form
``09:38:07 INFO message`` (no thread id, no file:line), and TensorFlow is quiet until
``--verbosity`` (``-v``) asks for more: its and Keras's Python code logs warnings and errors only,
its C++ log level is raised (``TF_CPP_MIN_LOG_LEVEL=2``, which the program's child processes
inherit) and the notices its libraries print while they load (the oneDNN banner, "All log
messages before absl::InitializeLog() ...") are dropped. With ``--verbosity=1`` or more they are
shown (each line once; ``--verbosity=2`` and up also raises ``TF_CPP_MAX_VLOG_LEVEL``). None of
this imports TensorFlow: a program loads it only once its flags are valid.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging as std_logging
import os
import re
import sys
import tempfile
import time

from absl import app, flags, logging

_HELP = ("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")

# What absl's flag parsers say about a value of the wrong type, and what the user reads instead.
_PLAIN_TYPE_ERRORS = (
    (re.compile(r"invalid literal for int\(\) with base 10: (.*)$"), "expected a whole number (e.g. 300000), got {}"),
    (re.compile(r"could not convert string to float: (.*)$"), "expected a number (e.g. 0.001), got {}"),
    (re.compile(r"\('Non-boolean argument to boolean flag', (.*)\)$"), "expected true or false, got {}"),
)
# Lines TensorFlow's C++ libraries print while they load: absl's INFO lines and its notice about them.
_LOAD_NOTICE = re.compile(r"^(I\d{4} \d\d:\d\d:\d+\.\d+ |WARNING: All log messages before absl::InitializeLog\(\))")
_ABSL_PREFIX = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ ")


# Python files of the libraries whose INFO records only --verbosity=1 shows ("Sharding callback duration" on
# every checkpoint, SavedModel notes): they log through absl, as this package does.
_LIBRARY_FILE = re.compile(r"[/\\](tensorflow|keras|tf_keras)[/\\]")


class _QuietLibraries(std_logging.Filter):
    """Drops the INFO and DEBUG records that TensorFlow and Keras log from their own files."""

    def filter(self, record):
        return record.levelno >= std_logging.WARNING or not _LIBRARY_FILE.search(record.pathname or "")


class ShortFormatter(std_logging.Formatter):
    """``HH:MM:SS LEVEL message``: the time, the level and the message, nothing else."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")

    def formatTime(self, record, datefmt=None):  # noqa: N802 (logging's name)
        return time.strftime(datefmt or "%H:%M:%S", time.localtime(record.created))


def plain_flag_error(message: str) -> str:
    """absl's flag error ``message`` with Python's wording for a value of the wrong type made plain, and without
    its ``flag --name=value:`` prefix where the message repeats it."""
    prefix = re.match(r"flag (--\w+)=.*?: (?=\1[= ])", message)
    if prefix:
        message = "flag " + message[prefix.end():]
    for pattern, plain in _PLAIN_TYPE_ERRORS:
        match = pattern.search(message)
        if match:
            return message[:match.start()] + plain.format(match.group(1)) + "."
    return message


def parse_flags_or_exit(argv):
    """Parses flags; an invalid value ends the program with one line naming the flag (exit status 2).

    Asking for help prints it and exits with status 0 (absl's help flags exit with 1).
    """
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(plain_flag_error(str(e)))
    except SystemExit as e:
        if e.code == 1 and any(a in _HELP for a in argv[1:]):
            sys.exit(0)
        raise


def fail(message: str, status: int = 2):
    """Ends the program with ``error: message`` on one line."""
    sys.stderr.write(f"error: {' '.join(str(message).split())}\n")
    sys.exit(status)


def refuse_positional(argv):
    """Ends the program if arguments other than flags were given."""
    if len(argv) > 1:
        fail(f"unexpected arguments {' '.join(argv[1:])!r}; every setting is a --flag=value (see --help).")


def run(main, flags_parser=parse_flags_or_exit):
    """``absl.app.run(main)`` with the prologue of every entry point.

    ``flags_parser`` parses the command line (by default :func:`parse_flags_or_exit`: one line per
    bad value); then :func:`configure_logging` sets the log format and quiets TensorFlow, before
    ``main`` imports it. An ``app.UsageError`` from ``main`` ends the program with one line, not
    absl's usage text.
    """

    def main_after_prologue(argv):
        configure_logging(flags.FLAGS["verbosity"].value)
        try:
            return main(argv)
        except app.UsageError as e:
            fail(str(e))

    app.run(main_after_prologue, flags_parser=flags_parser)


def configure_logging(verbosity: int):
    """The short log format, and TensorFlow's own messages off below ``verbosity`` 1 (before it loads)."""
    handler = logging.get_absl_handler()
    handler.setFormatter(ShortFormatter())
    verbose = verbosity >= 1
    for existing in [f for f in handler.filters if isinstance(f, _QuietLibraries)]:
        handler.removeFilter(existing)
    if not verbose:
        handler.addFilter(_QuietLibraries())
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        if verbosity >= 2:
            os.environ["TF_CPP_MAX_VLOG_LEVEL"] = str(verbosity - 1)
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    std_logging.getLogger("tensorflow").setLevel(std_logging.NOTSET if verbose else std_logging.WARNING)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport(verbose))


def filter_load_notices(text: str, verbose: bool) -> str:
    """What TensorFlow printed to stderr while it loaded, less its notices (``verbose``: each line once)."""
    kept, seen = [], set()
    for line in text.splitlines(keepends=True):
        if not verbose and _LOAD_NOTICE.match(line):
            continue
        message = _ABSL_PREFIX.sub("", line)
        if verbose and message in seen:  # TensorFlow's libraries each print the same notice
            continue
        seen.add(message)
        kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def _stderr_filtered(verbose: bool):
    """Collects what is written to file descriptor 2 meanwhile, and writes it out filtered at the end."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = filter_load_notices(captured.read().decode(errors="replace"), verbose)
            if text:
                sys.stderr.write(text)
                sys.stderr.flush()


class _QuietImport(importlib.abc.MetaPathFinder):
    """Loads the ``tensorflow`` package, the first time it is imported, under :func:`_stderr_filtered`."""

    def __init__(self, verbose: bool):
        self.verbose = verbose

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, self.verbose)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader, verbose: bool):
        self._loader = loader
        self._verbose = verbose

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self._loader
        with _stderr_filtered(self._verbose):
            self._loader.exec_module(module)
        module.__spec__.loader = self._loader
