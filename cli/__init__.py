"""The `kalshi-data` command: a thin argparse front over the packages.

Owns argument parsing, logging set-up and exit codes; imports each subcommand's package lazily.
Must not hold logic of its own: every subcommand calls one function of the package that owns it.
"""
