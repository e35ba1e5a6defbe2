-- MedStream's roles and database. Idempotent: `make up` runs it on every start of the
-- local stack, and docker-compose's Postgres runs it once at initialisation.
-- The owner runs migrations; services connect as `medstream`, with only the
-- privileges each migration grants. Development passwords: change them in production.
SELECT 'CREATE ROLE medstream_owner LOGIN PASSWORD ''medstream_owner'''
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'medstream_owner') \gexec
SELECT 'CREATE ROLE medstream LOGIN PASSWORD ''medstream'''
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'medstream') \gexec
SELECT 'CREATE DATABASE medstream OWNER medstream_owner'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'medstream') \gexec
REVOKE ALL ON DATABASE medstream FROM PUBLIC;
GRANT CONNECT ON DATABASE medstream TO medstream;

-- One role per service, and the auditor (medstream.platform.identities: POSTGRES_GRANTS;
-- migration 0006 grants each exactly its rights). Created without a password: the
-- local stack sets generated ones, docker-compose's init-passwords.sh its own.
SELECT 'CREATE ROLE medstream_ingestion LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'medstream_ingestion') \gexec
GRANT CONNECT ON DATABASE medstream TO medstream_ingestion;
SELECT 'CREATE ROLE medstream_deid LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'medstream_deid') \gexec
GRANT CONNECT ON DATABASE medstream TO medstream_deid;
SELECT 'CREATE ROLE medstream_monitoring LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'medstream_monitoring') \gexec
GRANT CONNECT ON DATABASE medstream TO medstream_monitoring;
SELECT 'CREATE ROLE medstream_imaging LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'medstream_imaging') \gexec
GRANT CONNECT ON DATABASE medstream TO medstream_imaging;
SELECT 'CREATE ROLE medstream_notes LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'medstream_notes') \gexec
GRANT CONNECT ON DATABASE medstream TO medstream_notes;
SELECT 'CREATE ROLE medstream_results LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'medstream_results') \gexec
GRANT CONNECT ON DATABASE medstream TO medstream_results;
SELECT 'CREATE ROLE medstream_audit LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'medstream_audit') \gexec
GRANT CONNECT ON DATABASE medstream TO medstream_audit;
SELECT 'CREATE ROLE medstream_gateway LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'medstream_gateway') \gexec
GRANT CONNECT ON DATABASE medstream TO medstream_gateway;
SELECT 'CREATE ROLE medstream_auditor LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'medstream_auditor') \gexec
GRANT CONNECT ON DATABASE medstream TO medstream_auditor;
