"""The TF_1 guide's ``record_depth.py``: ``mdp record-depth`` with the same arguments (``--help`` lists them)."""

import sys

from platform_api.cli import main

if __name__ == "__main__":
    sys.exit(main(["record-depth", *sys.argv[1:]]))
