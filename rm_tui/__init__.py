"""rm-tui: the terminal console (Python 3.11+, checked here first)."""

from rm_core.pyversion import SERVER_MINIMUM, require_python

require_python("rm-tui", SERVER_MINIMUM)
