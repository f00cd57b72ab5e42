"""Every core of a machine: `geodns serve --workers N` (see supervisor.py).

One supervisor process binds the sockets, reads and checks zones and config, runs
health checks (through one prober process), steering, zone transfers and the
control API; N worker processes answer DNS on SO_REUSEPORT sockets and serve
exactly the state the supervisor sends them.
"""
