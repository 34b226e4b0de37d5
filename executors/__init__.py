"""Built-in executors. Each module is a plugin registered under the
``orchestrator`` entry-point group."""
