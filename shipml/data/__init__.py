"""The data room: read a data set, clean it, split it, fingerprint it.

load_dataset(cfg, seed=..., task_kind=...) -> Dataset   what training and evaluation read
infer_data(path) -> DataProfile                          what `shipml init` proposes a config from
read_table / read_images                                 the same readers, for prediction inputs
cache_dir()                                              where unpacked archives and decoded images live
"""

from shipml.data.cache import cache_dir
from shipml.data.clean import category_text
from shipml.data.dataset import SPLITS, CleaningLog, Dataset
from shipml.data.decode import read_images
from shipml.data.inspect import DataProfile, infer_data
from shipml.data.load import load_dataset
from shipml.data.sources import read_table

__all__ = [
    "SPLITS",
    "CleaningLog",
    "DataProfile",
    "Dataset",
    "cache_dir",
    "category_text",
    "infer_data",
    "load_dataset",
    "read_images",
    "read_table",
]
