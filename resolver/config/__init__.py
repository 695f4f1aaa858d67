"""Configuration: the settings table, its layers (defaults, file, environment, flags) and reload
rules.
"""
