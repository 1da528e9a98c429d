"""Running a command-line entry point: absl's `app.run`, with a request for help answered by status 0.

absl prints the help and exits with status 1, as it does after a bad flag; users and scripts read 1 as
failure (`python -m alexnet_jax.main --help && ...` stops there).
"""

import sys

from absl import app

HELP_FLAGS = frozenset(
  prefix + name for prefix in ("-", "--") for name in ("help", "h", "?", "helpshort", "helpfull", "helpxml")
)


def run(main, **kwargs) -> None:
  """app.run(main, **kwargs); exit status 0 where the command line asked for help."""
  asked_for_help = any(arg.split("=", 1)[0] in HELP_FLAGS for arg in sys.argv[1:])
  try:
    app.run(main, **kwargs)
  except SystemExit as e:
    if asked_for_help and e.code == 1:
      sys.exit(0)
    raise
