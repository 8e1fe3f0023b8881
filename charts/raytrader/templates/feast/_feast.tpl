
{{/* The Feast ConfigMap's data (the Kubernetes profile); pods hash it to restart on a change. */}}
{{- define "raytrader.feastProfileData" -}}
# raytrader feature repo, KUBERNETES profile. Mounted over pipelines/feature_repo/feature_store.yaml
# (the `redis` profile every raytrader caller and `feast -c pipelines/feature_repo` load), so the
# repo's definitions are used unchanged. Feast expands the variables from the environment:
#   RAYTRADER_FEAST_REGISTRY_URL  SQL registry on PostgreSQL (SQLAlchemy URL; the in-chart server's
#                                 password reaches libpq as PGPASSWORD)
#   RAYTRADER_REDIS_CONNECTION    the online store, Feast's host:port,password=... (from a Secret)
#   RAYTRADER_FEAST_DATA          the offline Parquet files, on the shared data volume
# Why a SQL registry: Feast 0.67 supports it (registry_type sql, the same code path as the local
# profiles' SQLite registry); every pod reads and writes it over the network with transactions, so
# the decision service's Ray workers need no shared volume, where a file registry would need one
# (ReadWriteMany) with last-writer-wins updates.
feature_store.yaml: |
  project: raytrader
  provider: local
  registry:
    registry_type: sql
    path: ${RAYTRADER_FEAST_REGISTRY_URL}
    cache_ttl_seconds: {{ .Values.feast.registryCacheTtlSeconds }}
    sqlalchemy_config_kwargs:
      pool_pre_ping: true
  online_store:
    type: redis
    connection_string: ${RAYTRADER_REDIS_CONNECTION}
  offline_store:
    type: file
  entity_key_serialization_version: 3
{{- end }}
