"""The TF_1 guide's ``build_bars_coverage.py``: ``mdp build-bars-coverage`` with the same arguments (``--help`` lists them)."""

import sys

from platform_api.cli import main

if __name__ == "__main__":
    sys.exit(main(["build-bars-coverage", *sys.argv[1:]]))
