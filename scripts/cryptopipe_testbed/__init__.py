"""The local test bed: real Kafka, Spark, HDFS, Hive metastore and Kubernetes on 127.0.0.1.

Standard library only, so that it runs before the uv workspace is synced.
"""
