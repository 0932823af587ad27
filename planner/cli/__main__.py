"""``python -m planner.cli``: the command group itself. The installed ``plan-search`` and
``python -m planner`` go through :func:`planner.entry.main` as well, which also turns a Ctrl-C
during start-up into one line and exit 130."""
from planner.cli import main

if __name__ == "__main__":  # importing this module (pydoc, test collection) must not run the CLI
    main()
