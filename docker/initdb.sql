-- Runs once as the superuser when the database volume is created (psql, from the image's
-- entrypoint). RLS_BYPASS_KEY (at least 32 characters) must be the application's own.
\getenv rls_bypass_key RLS_BYPASS_KEY
CREATE EXTENSION IF NOT EXISTS vector;
CREATE ROLE mfapp LOGIN PASSWORD 'mfapp' NOSUPERUSER NOBYPASSRLS;
ALTER DATABASE mfplatform OWNER TO mfapp;
-- mfapp runs the migrations, so it owns every table, and creates, attaches and drops a vector
-- partition per model version at run time, in this schema.
ALTER SCHEMA public OWNER TO mfapp;
GRANT ALL ON SCHEMA public TO mfapp;
-- The row-level security bypass check (tenants.rls.bypass_function_sql): owned by the
-- superuser, so the application's role can call it but never replace it; it holds only the
-- key's sha256.
SELECT format(
  'CREATE OR REPLACE FUNCTION public.mf_rls_bypass_granted() RETURNS boolean'
  ' LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog AS $fn$'
  ' SELECT encode(sha256(convert_to(coalesce(current_setting(''app.rls_bypass'', true),'
  ' ''''), ''UTF8'')), ''hex'') = %L $fn$',
  encode(sha256(convert_to(:'rls_bypass_key', 'UTF8')), 'hex')) \gexec
