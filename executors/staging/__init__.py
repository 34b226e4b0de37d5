"""The staging executor: landing → (transformation) → dump, then archive or delete the landing files.

``executor`` is the plugin face; ``transfer`` and ``archive`` do the work over a ``storage``
(local files, or ``s3store``); ``journal`` remembers in-flight work so a crash loses nothing;
``locations`` and ``loader`` resolve paths and user code; ``copy`` and ``parallel`` are the tools.
"""
from .executor import StagingExecutor, register_executors

__all__ = ["StagingExecutor", "register_executors"]
