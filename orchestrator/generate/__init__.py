"""``orchestrate generate``: turn a routine (a file or ``NAME@VERSION``) into what runs elsewhere.

One module per target (``script``, ``docker``, ``lambda``); ``targets`` finds them (built in, or
from a plugin's ``generate_targets`` hook) and writes their output safely; ``archive`` and
``packaging`` build the deterministic archives and the pinned dependency set they share.
"""
