{{/* A job's config as JSON: (dict "ctx" $ "job" .Values.jobs.train). JSON, not YAML: Helm writes
small floats as 3e-05, which YAML 1.1 (PyYAML) reads back as a string. */}}
{{- define "raytrader.jobConfig" -}}
{{- $file := default (printf "%s.yaml" .job.pipeline) .job.baseConfig }}
{{- $raw := .ctx.Files.Get (printf "files/configs/%s" $file) }}
{{- if not $raw }}
{{- fail (printf "jobs: no example config files/configs/%s (pipelines/configs/%s); baseConfig must name one of them" $file $file) }}
{{- end }}
{{- $config := mergeOverwrite (fromYaml $raw) (deepCopy .job.config) }}
{{- $out := toString (default "" (get $config "output_dir")) }}
{{- if and $out (not (hasPrefix "/" $out)) }}
{{- $_ := set $config "output_dir" (printf "/app/%s" $out) }}
{{- end }}
{{- toPrettyJson $config }}
{{- end }}
