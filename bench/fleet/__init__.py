"""The fleet-scale benches' parts (bench/server_scale.py, bench/tui_scale.py): a database
seeded with N hosts, simulated agents, latency probes, the processes that run them, the
loop over fleet sizes, and the server bench's phases and report (the console bench's own
parts are in bench/console/).

Imported as `fleet` (the benches run as `python bench/<name>.py`, so bench/ is on sys.path):
multiprocessing spawns children that import their entry (`fleet.agents.swarm_main`,
`fleet.probe.probe_main`, `fleet.seed.prepare_main`) from here by that name.
"""
