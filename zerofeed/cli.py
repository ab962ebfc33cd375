"""``zerofeed``: the command-line entry point; each subcommand lives with the code it runs."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from zerofeed import __version__

__all__ = ["main"]

_USAGE = """usage: zerofeed COMMAND [options]

commands:
  producer      decode and augment images for a consumer (zerofeed producer --help)
  sample-data   write a small sample image dataset (zerofeed sample-data --help)
  pack          write a data set as tar shards plus an index (zerofeed pack --help)
  status        the live state of a running consumer (zerofeed status ENDPOINT)
  keys          make CURVE key pairs for authenticated, encrypted feeds (zerofeed keys --help)

options:
  -h, --help    show this message
  --version     print zerofeed's version
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand; imports only what that subcommand needs."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args else ""
    if command in ("--version", "-V"):
        sys.stdout.write(f"zerofeed {__version__}\n")
        return 0
    if command == "producer":
        from zerofeed.producer.cli import main as producer_main

        return producer_main(args)
    if command == "sample-data":
        from zerofeed.sampledata import main as sample_main

        return sample_main(args)
    if command == "pack":
        from zerofeed.pack import main as pack_main

        return pack_main(args)
    if command == "status":
        from zerofeed.status import main as status_main

        return status_main(args)
    if command == "keys":
        from zerofeed.common.curve import main as keys_main

        return keys_main(args)
    sys.stderr.write(_USAGE)
    return 0 if command in ("-h", "--help") else 2


if __name__ == "__main__":
    raise SystemExit(main())
