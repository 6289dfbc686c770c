"""The metrics service: stores training curves, final metrics and model artifacts (reassembled
from checksummed chunks) from the events and artifacts topics, in batches."""
