"""The message broker on NATS JetStream.

Jobs on a work queue (`jobs`), notifications on core subjects (`broker`).
"""
