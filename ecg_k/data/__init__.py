"""ecg-k."""
