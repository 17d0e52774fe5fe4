"""`python -m client`: the debflow command line, for processes started without the console script."""

from client.cli import main

main()
