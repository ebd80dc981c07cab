"""`python -m optimize`: like the `optimize` command. `-m` puts the current directory first on
sys.path; it is removed so a recipe's `python:` module can never come from wherever the command
happened to be started (see optimize/pyimport.py)."""

import os
import sys

if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from optimize.cli import main  # noqa: E402

main()
