"""The daemon: components built from their config slices, lifecycle and signals, workers, the CLI.
"""
