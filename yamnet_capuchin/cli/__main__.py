"""``python -m yamnet_capuchin.cli``: the same as ``yamcap``."""

from . import main

main()
