"""The staging executor: landing → (transformation) → dump, then archive or delete the landing files.

``executor`` is the plugin face; it hands ``transfer`` and ``archive`` a frozen ``settings``
value and ``Store``s (``storage``: the protocol and local files; ``s3store``), never itself.
``journal`` remembers in-flight work so a crash loses nothing; ``ledger`` keeps on disk what
``transfer`` copied, for ``post_staging`` and resume; ``claim`` takes exactly the copied file;
``locations`` and ``loader`` resolve paths and user code; ``copy`` and ``parallel`` are the tools.
"""

from .executor import StagingExecutor, register_executors

__all__ = ["StagingExecutor", "register_executors"]
