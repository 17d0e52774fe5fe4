"""`python -m client`: the debflow command line, for processes started without the console script."""

import sys

from client.cli import app

sys.exit(app())
