"""``python -m planner``: the same program as the installed ``plan-search``."""
from planner.entry import main

if __name__ == "__main__":  # not when a test collector imports the module
    main()
