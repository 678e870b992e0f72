"""The project's one command-line tool, `scorer` (console script; `python -m cli` is the same): each
subcommand runs one package's entry point, and add-item (training, then export) lives here, above both."""
