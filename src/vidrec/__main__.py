"""`python -m vidrec`: the CLI (the drift monitor starts training runs this way)."""

from vidrec.cli import main

main()
