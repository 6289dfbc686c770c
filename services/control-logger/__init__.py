"""The control logger (imported as ``services.control_logger``): validates upstream Kafka-ML
control messages, records data sources and announces them. Arrives with the training issue."""
