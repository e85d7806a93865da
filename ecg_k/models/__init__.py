"""Neural network models (torch); not imported by the inference path, which runs the ONNX export."""

from ecg_k.models.net1d import (
    NET1D_CONFIGS,
    Net1D,
    Net1DConfig,
    build_net1d,
    count_parameters,
)

__all__ = ["NET1D_CONFIGS", "Net1D", "Net1DConfig", "build_net1d", "count_parameters"]
