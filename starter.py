"""The operators' CLI: `python starter.py NOUN VERB …` (`--help` at every level).

The commands live in `cli/`, one module per noun; this file is the entry point.
"""

from cli import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
