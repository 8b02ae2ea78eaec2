"""titan-exec command line (placeholder until the CLI lands)."""


def main() -> None:
    raise SystemExit("titan-exec: not built yet")
