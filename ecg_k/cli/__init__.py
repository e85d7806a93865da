"""The ``ecgk`` command line (Typer), one module per concern:

- :mod:`ecg_k.cli.app`: the root app, ``--version``, the plugin commands (``ecgk.commands`` entry points) and
  :func:`main`, the console script;
- :mod:`ecg_k.cli.data`: ``ecgk synth`` and ``ecgk ingest``;
- :mod:`ecg_k.cli.database`: ``ecgk db``, ``keys``, ``models`` and ``audit`` (SQLAlchemy imported per command);
- :mod:`ecg_k.cli.options` and :mod:`ecg_k.cli.output`: what the commands of every package share (option
  parsing, the consoles, the one-line error).

Imports run one way, ``app`` -> ``data``/``database`` -> ``options`` -> ``output``; the names below are the
ones other packages and the tests use.
"""

from ecg_k.cli.app import app, load_plugins, main, version_line
from ecg_k.cli.data import print_dataset_summary
from ecg_k.cli.options import parse_int_list, parse_options, validation_message
from ecg_k.cli.output import console, err_console, fail, print_error

__all__ = ["app", "console", "err_console", "fail", "load_plugins", "main", "parse_int_list", "parse_options",
           "print_dataset_summary", "print_error", "validation_message", "version_line"]
