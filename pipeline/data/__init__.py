"""Data: data sets by name (``datasets``), encoders to time-first network input (``encoders``), and the N-MNIST
readers and saccade + DVS synthesiser (``nmnist_synth``, imported only when an N-MNIST data set is loaded)."""

from lavaflow.pipeline.data.datasets import DATA_SETS, DataInfo, Kind, data_dir, load_data
from lavaflow.pipeline.data.encoders import ENCODERS, CurrentEncoder, Encoding, EventsEncoder, RateEncoder, encode

__all__ = [
    "DATA_SETS",
    "ENCODERS",
    "CurrentEncoder",
    "DataInfo",
    "Encoding",
    "EventsEncoder",
    "Kind",
    "RateEncoder",
    "data_dir",
    "encode",
    "load_data",
]
