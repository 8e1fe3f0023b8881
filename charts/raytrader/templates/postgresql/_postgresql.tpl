
{{/* The PostgreSQL init ConfigMap's data. */}}
{{- define "raytrader.postgresqlInitData" -}}
# Run once by the image's entrypoint on an empty data directory: the application role (not a
# superuser) owning MLflow's and Feast's databases and the experiment store's. The password is read
# from the mounted Secret. On a data volume initialised before a database was added here, the
# experiment API's migration Job creates its database.
10-raytrader.sh: |
  #!/bin/bash
  set -euo pipefail
  password=$(cat /etc/postgresql-secret/password)
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set=role={{ .Values.postgresql.auth.username | quote }} --set=password="$password" <<'SQL'
  CREATE ROLE :"role" LOGIN PASSWORD :'password';
  CREATE DATABASE {{ .Values.postgresql.auth.mlflowDatabase | quote }} OWNER :"role";
  CREATE DATABASE {{ .Values.postgresql.auth.feastDatabase | quote }} OWNER :"role";
  CREATE DATABASE {{ .Values.experimentApi.database.name | quote }} OWNER :"role";
  SQL
{{- end }}
