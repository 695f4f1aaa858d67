"""Static records from the config (``[[records]]`` and ``--record``) as a registry source."""
