-- docker-compose's postgres service creates POSTGRES_DB (participants); Dagster's instance
-- gets a database of its own, as in deploy/topology.py.
CREATE DATABASE dagster OWNER event_pipeline;
