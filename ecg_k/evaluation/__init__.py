"""Evaluation of K+ estimates (method.md sections 6-7), one concept per module; numpy/scipy/pandas only (no
torch), because the dashboard imports it:

- :mod:`~ecg_k.evaluation.inputs`: finite arrays in, JSON-safe values out;
- :mod:`~ecg_k.evaluation.regions`: shot regions (many/median/few) from the training label histogram;
- :mod:`~ecg_k.evaluation.regression`: MAE/MSE/GM/bMAE per region, Pearson r, per-bin errors;
- :mod:`~ecg_k.evaluation.bootstrap`: resampling weights, percentile CIs, the paired error bootstrap;
- :mod:`~ecg_k.evaluation.detection`: hyper/hypokalemia detection metrics with bootstrap CIs;
- :mod:`~ecg_k.evaluation.report`: the ``metrics.json`` of a run;
- :mod:`~ecg_k.evaluation.plot_data`: the data behind the report's plots and the dashboard's charts;
- :mod:`~ecg_k.evaluation.published`: the paper's numbers to compare against.
"""
