"""bench/tui_scale.py's parts: the real rm-tui app driven through a driver that times every
frame (frames.py), the simulated agents that run jobs and reconnect on command (agents.py),
one fleet size phase by phase (phases.py), and the targets and table (report.py). The
database, agent processes, server and statistics are bench/fleet/'s.

Imported as `console` (the bench runs as `python bench/tui_scale.py`, so bench/ is on
sys.path): multiprocessing spawns children that find `console.agents.TuiSwarm` by that name.
"""
