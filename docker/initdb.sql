-- Runs once as the superuser when the database volume is created.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE ROLE mfapp LOGIN PASSWORD 'mfapp' NOSUPERUSER NOBYPASSRLS;
ALTER DATABASE mfplatform OWNER TO mfapp;
-- mfapp runs the migrations, so it owns every table, and creates, attaches and drops a vector
-- partition per model version at run time, in this schema.
ALTER SCHEMA public OWNER TO mfapp;
GRANT ALL ON SCHEMA public TO mfapp;
