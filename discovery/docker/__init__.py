"""A Docker (or Podman) engine as a registry source: inspect data, events, the engine socket."""
