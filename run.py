"""Entry point: `python run.py` starts the sandbox; `python run.py --help` lists commands."""

import sys

from server.sandbox.commands import main

if __name__ == "__main__":
    sys.exit(main())
