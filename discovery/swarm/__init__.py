"""Swarm services and tasks as a registry source."""
