"""``python -m zerofeed``: the same as the ``zerofeed`` command."""

from zerofeed.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
