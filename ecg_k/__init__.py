"""ecg-k: blood potassium (K+) estimated from the ECG, built for the rare, dangerous values."""

__version__ = "0.1.0"
