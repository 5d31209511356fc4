"""The data room: read a data set, clean it, split it, fingerprint it; fetch public ones.

load_dataset(cfg, seed=..., task_kind=..., kind=...) -> Dataset   what training and evaluation read
infer_data(path) -> DataProfile                                  what `shipml init` proposes a config from
read_table / message_text / category_text                        the readers of shipml.core, re-exported (prediction
                                                                 inputs are read by shipml.runtime)
fetch_dataset(name, to, from_dir=...) -> FetchReport             `shipml datasets fetch`; list_fetchers()
cache_dir()                                                      where unpacked archives, decoded images
                                                                 and parsed email texts live
"""

from shipml.core.email import message_text
from shipml.data.cache import cache_dir
from shipml.data.clean import category_text
from shipml.data.dataset import SPLITS, CleaningLog, Dataset
from shipml.data.fetch import FetchReport, fetch_dataset, list_fetchers
from shipml.data.inspect import DataProfile, infer_data
from shipml.data.load import load_dataset
from shipml.data.sources import read_table

__all__ = [
    "SPLITS",
    "CleaningLog",
    "DataProfile",
    "Dataset",
    "FetchReport",
    "cache_dir",
    "category_text",
    "fetch_dataset",
    "infer_data",
    "list_fetchers",
    "load_dataset",
    "message_text",
    "read_table",
]
