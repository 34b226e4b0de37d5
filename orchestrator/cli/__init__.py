"""``orchestrate``: the command-line adapter. It parses, calls the core and renders; nothing more.

``app`` is the entry point, ``parser`` the grammar, ``commands`` the table of commands (one
``*_cmd`` module per family); ``render`` the console listeners; ``views`` how runs are shown.
"""
from .app import main

__all__ = ["main"]
