"""The laboratory's `titan-exec` commands, each a module with ``add_parser(subparsers)``,
named by a `titan_exec.commands` entry point in pyproject.toml."""
