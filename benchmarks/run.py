"""Run the benchmarks: a thin wrapper over `yamcap benchmark` (same options).

    python benchmarks/run.py --data ../shared/data/capuchin --cnn-model runs/cnn

Results go to benchmarks/results/<date>-<machine>.json and .md.
"""

import sys

from yamnet_capuchin.cli import app

if __name__ == "__main__":
    sys.exit(app(["benchmark", *sys.argv[1:]]))
