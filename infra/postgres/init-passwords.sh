#!/bin/sh
# docker-compose's Postgres runs this once at initialisation, after init-roles.sql:
# each MedStream role's password (the owner's and the operator's too, replacing the
# development ones init-roles.sql creates) from its compose secret
# (/run/secrets/pg_<principal>_password,
# from MEDSTREAM_SECRETS_DIR; development values in infra/compose-secrets/, which
# services refuse outside MEDSTREAM_ENV=dev). The local stack (`make up`) sets
# generated passwords itself.
set -eu
set_password() {  # role, secret name
  password=$(cat "/run/secrets/$2")
  # psql substitutes :"role" and :'password' (quoted safely) only in script input.
  echo "ALTER ROLE :\"role\" PASSWORD :'password';" | psql -v ON_ERROR_STOP=1 \
    -U postgres -d medstream -v role="$1" -v password="$password"
}
for principal in ingestion deid monitoring imaging notes results audit gateway auditor; do
  set_password "medstream_$principal" "pg_${principal}_password"
done
set_password medstream_owner pg_owner_password
set_password medstream pg_operator_password
