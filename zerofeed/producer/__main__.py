"""``python -m zerofeed.producer``: the same as ``zerofeed producer``."""

from zerofeed.producer.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
