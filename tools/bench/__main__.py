"""``python -m tools.bench``: the benchmark command (see tools/bench/cli.py)."""

from tools.bench.cli import main

if __name__ == "__main__":
    main()
