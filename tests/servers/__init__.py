"""Real servers (Elasticsearch, ...) for the tests, as pytest plugins."""
