"""Shared command-line behaviour of the entry points: a bad input ends the program with one line."""

from __future__ import annotations

import sys

from absl import flags

_HELP = ("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def parse_flags_or_exit(argv):
    """Parses flags; an invalid value ends the program with one line naming the flag (exit status 2).

    Asking for help prints it and exits with status 0 (absl's help flags exit with 1).
    """
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(2)
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
