"""tests/production: the docker-compose file, and its topology run natively on PostgreSQL and Redis."""

# DAG files are parsed by Airflow's dag-processor in the topology test, not imported by pytest.
collect_ignore = ["dags"]
