"""``python -m planner.cli``: the command line, as the installed ``plan-search`` runs it
(:func:`planner.entry.main`: a Ctrl-C during start-up is one line and exit 130)."""
from planner.entry import main

if __name__ == "__main__":  # importing this module (pydoc, test collection) must not run the CLI
    main()
