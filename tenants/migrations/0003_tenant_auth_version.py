from django.db import migrations, models

# Every update of a tenant's row, and every change of one of its keys that authentication
# reads, advances the tenant's auth_version: in the database, so that changes made by any
# process, by a queryset update or by hand all count, and so that no stale value written back
# by Django's save() can turn it back.
FORWARD = [
    """
    CREATE FUNCTION tenants_advance_auth_version() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
    BEGIN
      NEW.auth_version := OLD.auth_version + 1;
      RETURN NEW;
    END
    $fn$""",
    """
    CREATE TRIGGER tenants_tenant_auth_version BEFORE UPDATE ON tenants_tenant
    FOR EACH ROW EXECUTE FUNCTION tenants_advance_auth_version()""",
    """
    CREATE FUNCTION tenants_apikey_changed() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
    BEGIN
      -- The tenant row's own trigger advances the counter.
      IF TG_OP = 'DELETE' THEN
        UPDATE tenants_tenant SET auth_version = auth_version WHERE id = OLD.tenant_id;
        RETURN OLD;
      END IF;
      UPDATE tenants_tenant SET auth_version = auth_version
       WHERE id IN (OLD.tenant_id, NEW.tenant_id);
      RETURN NEW;
    END
    $fn$""",
    # Not last_used_at: serving records use once a minute and that changes nothing.
    """
    CREATE TRIGGER tenants_apikey_auth_version
    AFTER UPDATE OF prefix, hashed_key, scopes, expires_at, revoked_at, tenant_id OR DELETE
    ON tenants_apikey FOR EACH ROW EXECUTE FUNCTION tenants_apikey_changed()""",
]
BACKWARD = [
    "DROP TRIGGER IF EXISTS tenants_apikey_auth_version ON tenants_apikey",
    "DROP FUNCTION IF EXISTS tenants_apikey_changed()",
    "DROP TRIGGER IF EXISTS tenants_tenant_auth_version ON tenants_tenant",
    "DROP FUNCTION IF EXISTS tenants_advance_auth_version()",
]


class Migration(migrations.Migration):
    dependencies = [("tenants", "0002_row_level_security")]

    operations = [
        migrations.AddField(
            model_name="tenant",
            name="auth_version",
            field=models.BigIntegerField(default=0, editable=False),
        ),
        migrations.RunSQL(sql=FORWARD, reverse_sql=BACKWARD),
    ]
