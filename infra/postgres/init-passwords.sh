#!/bin/sh
# docker-compose's Postgres runs this once at initialisation, after init-roles.sql:
# each MedStream role's password from its compose secret (/run/secrets/pg_<role>_password,
# from MEDSTREAM_SECRETS_DIR; development values in infra/compose-secrets/, which
# services refuse outside MEDSTREAM_ENV=dev). The local stack (`make up`) sets
# generated passwords itself.
set -eu
for principal in relay ingestion deid monitoring imaging notes results audit auditor; do
  password=$(cat "/run/secrets/pg_${principal}_password")
  # psql substitutes :"role" and :'password' (quoted safely) only in script input.
  echo "ALTER ROLE :\"role\" PASSWORD :'password';" | psql -v ON_ERROR_STOP=1 \
    -U postgres -d medstream -v role="medstream_$principal" -v password="$password"
done
