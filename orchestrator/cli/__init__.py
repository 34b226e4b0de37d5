"""``orchestrate``: the command-line adapter. It parses, calls the core and renders; nothing more.

``app`` holds the commands; ``render`` the console listeners; ``views`` how runs are shown.
"""
from .app import main

__all__ = ["main"]
