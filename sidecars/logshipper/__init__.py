"""logshipper: tails the pod's shared log files into Elasticsearch."""
