"""The registry model (networks, records, clients), the registry that merges sources, the Source
protocol.
"""
