"""Synthetic ECG-K-DIR: ECGs with a known K+ effect, written in the real MIMIC-IV(-ECG) layout.

``generate_dataset`` is what the CLI calls; the waveform model (``ecg_model``), its parameters
(``params``) and the tables (``tables``) are documented in docs/synthetic.md.
"""

from ecg_k.synth.dataset import SynthSummary, generate_dataset

__all__ = ["SynthSummary", "generate_dataset"]
