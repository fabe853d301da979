"""The TF_1 guide's ``auto_backfill_from_warrior.py``: ``mdp warrior-backfill`` with the same arguments (``--help`` lists them)."""

import sys

from platform_api.cli import main

if __name__ == "__main__":
    sys.exit(main(["warrior-backfill", *sys.argv[1:]]))
