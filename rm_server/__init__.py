"""rm-server: the fleet's API, agent hub and scheduler (Python 3.11+, checked here first)."""

from rm_core.pyversion import SERVER_MINIMUM, require_python

require_python("rm-server", SERVER_MINIMUM)
