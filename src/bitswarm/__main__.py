"""``python -m bitswarm`` runs the command-line interface."""

from bitswarm.cli import main

main()
