"""The fleet-scale benches' parts (bench/server_scale.py, bench/replicas.py,
bench/tui_scale.py): a database (SQLite or PostgreSQL) seeded with N hosts, simulated agents
(with their jobs' outbox), latency probes, the processes that run them, the loop over fleet
sizes, the server benches' phases (phases.py, shared), the replicas' run, kill and final
check (replica_run.py, failover.py) and each bench's report (the console bench's own parts
are in bench/console/).

Imported as `fleet` (the benches run as `python bench/<name>.py`, so bench/ is on sys.path):
multiprocessing spawns children that import their entry (`fleet.agents.swarm_main`,
`fleet.probe.probe_main`, `fleet.seed.prepare_main`) from here by that name.
"""
