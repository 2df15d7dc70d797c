"""`python -m mailplat` runs the command-line interface."""

from mailplat.cli import main

main()
