"""A trainer's data: its control message, the announced records, the split.

Read exactly the ranges the control message announces (:mod:`.ranges`), split
them the same way every time (:mod:`.split`), and hold the decoded data set in
memory or stream it from Kafka every epoch when it is over the memory budget
(:mod:`.datasets`, :mod:`.loading`).
"""

from services.trainer.data.control import FoundControl, find_control_message
from services.trainer.data.datasets import PARTS, InMemoryData, Part, StreamingData, TrainingData
from services.trainer.data.errors import DataError
from services.trainer.data.loading import DEFAULT_BUDGET_BYTES, load_training_data
from services.trainer.data.ranges import RecordBatch, check_topics, iter_ranges
from services.trainer.data.split import SPLIT_SEED, split_counts, split_indices

__all__ = [
    "DEFAULT_BUDGET_BYTES",
    "PARTS",
    "SPLIT_SEED",
    "DataError",
    "FoundControl",
    "InMemoryData",
    "Part",
    "RecordBatch",
    "StreamingData",
    "TrainingData",
    "check_topics",
    "find_control_message",
    "iter_ranges",
    "load_training_data",
    "split_counts",
    "split_indices",
]
