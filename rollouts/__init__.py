"""On-disk episodes: format (writer, reader, checks), collection, clip dataset, videos."""

from latentplay.rollouts.format import (
    CorruptShardError,
    DatasetError,
    EpisodeReader,
    load_meta,
)

__all__ = ["ClipDataset", "CorruptShardError", "DatasetError", "EpisodeReader", "load_meta"]


def __getattr__(name: str):  # torch is imported only when ClipDataset is asked for
    if name == "ClipDataset":
        from latentplay.rollouts.dataset import ClipDataset

        return ClipDataset
    raise AttributeError(name)
