from tests.pg import postgres_cluster, postgres_url, store_url  # noqa: F401  (fixtures)
