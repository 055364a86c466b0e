"""The `pattern-tracker` command line: one module per command group."""
