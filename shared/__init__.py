"""What more than one Kafka-ML service needs: settings, topics, messages, Kafka and database helpers."""
