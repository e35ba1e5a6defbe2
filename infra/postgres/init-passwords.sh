#!/bin/sh
# docker-compose's Postgres runs this once at initialisation, after init-roles.sql:
# each MedStream role's password from the environment (PG_ROLE_<ROLE>_PASSWORD),
# defaulting to a development value that services refuse outside MEDSTREAM_ENV=dev.
# The local stack (`make up`) sets generated passwords itself.
set -eu
for principal in relay ingestion deid monitoring imaging notes results audit auditor; do
  variable="PG_ROLE_$(echo "$principal" | tr '[:lower:]' '[:upper:]')_PASSWORD"
  password=$(printenv "$variable" || echo "dev-postgres-$principal-password")
  # psql substitutes :"role" and :'password' (quoted safely) only in script input.
  echo "ALTER ROLE :\"role\" PASSWORD :'password';" | psql -v ON_ERROR_STOP=1 \
    -U postgres -d medstream -v role="medstream_$principal" -v password="$password"
done
