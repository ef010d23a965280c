"""The Kafka boundary: the only package that imports confluent-kafka.

    client.py    the client settings and log adapter every consumer and producer shares
    source.py    the partitioned event source (and bounded reads of a topic)
    producer.py  an acknowledged producer, and the email transport onto a topic
    sinks.py     Bytewax sinks for the decision log, segments, outcomes and dead letters
"""
