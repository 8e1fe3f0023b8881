{{/* serveConfigV2: pipelines/serve/serve_config.yaml (files/serve_config.yaml links to it), with only
what differs in a cluster overridden: HTTP on 0.0.0.0 and inference.port, the model URI, Feast's
redis profile, inference.args, and both deployments' Serve autoscaling. */}}
{{- define "raytrader.serveConfig" -}}
{{- $v := .Values }}
{{- $raw := .Files.Get "files/serve_config.yaml" }}
{{- if not $raw }}
{{- fail "files/serve_config.yaml is missing: it must be a link to pipelines/serve/serve_config.yaml (render the chart from the source tree, or package it with `helm package`, which resolves the link)" }}
{{- end }}
{{- $cfg := fromYaml $raw }}
{{- if hasKey $cfg "Error" }}
{{- fail (printf "files/serve_config.yaml: %s" $cfg.Error) }}
{{- end }}
{{- $http := default (dict) (get $cfg "http_options") }}
{{- $_ := set $http "host" "0.0.0.0" }}
{{- $_ := set $http "port" (int $v.inference.port) }}
{{- $_ := set $cfg "http_options" $http }}
{{- if $v.inference.proxyLocation }}
{{- $_ := set $cfg "proxy_location" $v.inference.proxyLocation }}
{{- end }}
{{- $uri := printf "models:/%s@%s" $v.inference.model.name $v.inference.model.alias }}
{{- if $v.inference.model.version }}
{{- $uri = printf "models:/%s/%v" $v.inference.model.name $v.inference.model.version }}
{{- end }}
{{- $found := false }}
{{- range $app := $cfg.applications }}
{{- if eq $app.import_path "raytrader.serving.app:build" }}
{{- $found = true }}
{{- $args := mergeOverwrite (default (dict) $app.args) (deepCopy $v.inference.args) }}
{{- $_ := set $args "model_uri" $uri }}
{{- $_ := set $args "feast_profile" "redis" }}
{{- $_ := unset $args "local_dev" }}
{{- $_ := set $app "args" $args }}
{{- range $d := $app.deployments }}
{{- $scaling := dict "DecisionAPI" $v.inference.ingressAutoscaling "DecisionModel" $v.inference.autoscaling }}
{{- with get $scaling $d.name }}
{{- $_ := unset $d "num_replicas" }}
{{- $as := default (dict) $d.autoscaling_config }}
{{- $_ := set $as "min_replicas" (int .minReplicas) }}
{{- $_ := set $as "max_replicas" (int .maxReplicas) }}
{{- $_ := set $as "target_ongoing_requests" .targetOngoingRequests }}
{{- $_ := set $d "autoscaling_config" $as }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if not $found }}
{{- fail "files/serve_config.yaml has no application with import_path raytrader.serving.app:build" }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}
