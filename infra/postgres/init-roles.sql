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
