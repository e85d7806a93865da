"""The typed records a job leaves on disk, each with one writer and one reader (DESIGN.md "Rules").

- :mod:`ecg_k.records.dataset`: ``D/manifest.json`` of a dataset directory (``ecgk ingest``, the retraining
  job's merged dataset) as :class:`~ecg_k.records.dataset.DatasetManifest`.
- :mod:`ecg_k.records.run`: a training run's ``R/config.json`` (``ecgk train``) as
  :class:`~ecg_k.records.run.RunRecord` and its ``R/metrics.json`` (``ecgk evaluate``, holding the shot
  regions computed once) as :class:`~ecg_k.records.run.RunMetrics`.
- The model card (``R/model_card.json``, ``ecgk export``) lives in :mod:`ecg_k.model_card`, beside the
  runtime helpers that read it.

Every record is a frozen pydantic model that forbids unknown keys and carries a ``format`` version; a reader
migrates the previous format or refuses it naming the version. Nothing else parses these files (a test
greps the source tree for it).
"""
