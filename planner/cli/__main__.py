"""``python -m planner.cli``: the command line, as the installed ``plan-search`` runs it."""
from planner.cli import main

main()
