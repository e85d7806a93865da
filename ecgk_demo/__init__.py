"""What the demo, the tests and the benchmarks share, kept out of the domain package ``ecg_k``.

- :mod:`ecgk_demo.loopback`: start a server process on 127.0.0.1 and wait until it answers (the demo's API
  and dashboard, the tests' and benchmarks' servers).
- :mod:`ecgk_demo.traffic`: a synthetic model registry in use (evaluated runs, served predictions and lab
  confirmations) for the dashboard's tests and benchmark.

It imports ``ecg_k`` only; ``service`` and ``dashboard`` never import it.
"""
