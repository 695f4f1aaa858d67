"""dockdns: the registry model and the sources that feed it (hosts files, Docker, Swarm)."""
