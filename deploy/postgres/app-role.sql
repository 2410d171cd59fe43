-- The application's database role, bluespark_app (docs/operations.md, "Database roles").
--
-- The tables' owner (bluespark in docker-compose) runs migrations and is the
-- only role that may change or remove audit events; the web, worker and beat
-- processes log in as bluespark_app, which may read and write rows but owns
-- nothing, runs no DDL, and is not a member of the owner, so the audit
-- table's append-only trigger applies to it.
--
-- Run it with psql AS THE OWNER ROLE (the default privileges below are that
-- role's), with the password in the psql variable app_password:
--     psql -v ON_ERROR_STOP=1 --single-transaction -v app_password=... -f app-role.sql
-- deploy/postgres/01-app-role.sh does this in the postgres container, reading
-- the password from a secret file without putting it on a command line.
--
-- Safe to run again: it creates the role or resets its attributes and
-- password, and grants on the tables and sequences that already exist as well
-- as on those that migrations create later.

DO $$
BEGIN
    IF EXISTS (
        SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
          AND pg_get_userbyid(c.relowner) <> current_user
    ) THEN
        RAISE EXCEPTION 'run app-role.sql as the role that owns the tables in schema public (the one that runs migrations), not as %', current_user;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bluespark_app') THEN
        CREATE ROLE bluespark_app;
    END IF;
END
$$;

ALTER ROLE bluespark_app WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'app_password';
-- JIT compilation costs hundreds of milliseconds on the segment counts' short plans (bench/README.md).
ALTER ROLE bluespark_app SET jit = off;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO bluespark_app', current_database());
END
$$;

GRANT USAGE ON SCHEMA public TO bluespark_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO bluespark_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO bluespark_app;
ALTER DEFAULT PRIVILEGES FOR ROLE CURRENT_USER IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO bluespark_app;
ALTER DEFAULT PRIVILEGES FOR ROLE CURRENT_USER IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO bluespark_app;

-- The promises the audit trail depends on; refuse to finish without them.
DO $$
BEGIN
    IF pg_has_role('bluespark_app', current_user, 'MEMBER') THEN
        RAISE EXCEPTION 'bluespark_app is a member of % (the tables'' owner): revoke that membership', current_user;
    END IF;
    IF EXISTS (SELECT FROM pg_class WHERE relowner = 'bluespark_app'::regrole) THEN
        RAISE EXCEPTION 'bluespark_app owns tables in %: it must own nothing', current_database();
    END IF;
END
$$;
