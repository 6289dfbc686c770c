"""The control logger (imported as ``services.control_logger``): validates upstream Kafka-ML
control messages, records each as a data source and announces it with ``DatasourceRecorded``."""
