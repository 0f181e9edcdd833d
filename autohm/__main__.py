"""`python -m autohm` runs the command line."""

from autohm.cli import main

main()
