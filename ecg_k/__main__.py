"""``python -m ecg_k`` = ``ecgk``."""

from ecg_k.cli import main

main()
