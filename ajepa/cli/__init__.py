"""The entry points, one module per command: argument parsing and error reporting only.

This is the top floor (docs/ARCHITECTURE.md): a command module may import any library
module, and no library module imports one of these, so a CLI never causes an import
cycle below it. Each module exposes ``main(argv=None) -> int`` (the console script
named in pyproject.toml) and runs as ``python -m ajepa.cli.<command>``.
"""
