"""Answering: client views, the memo of ready replies, local answers from the registry, the handler
and its stage chain.
"""
