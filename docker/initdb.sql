-- Runs once as the superuser when the database volume is created.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE ROLE mfapp LOGIN PASSWORD 'mfapp' NOSUPERUSER NOBYPASSRLS;
ALTER DATABASE mfplatform OWNER TO mfapp;
GRANT ALL ON SCHEMA public TO mfapp;
