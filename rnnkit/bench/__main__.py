"""``python -m rnnkit.bench NAME|--all [--quick] [--device gpu]``: run and record benchmarks."""
import sys

from . import main

main(sys.argv[1:])
