{{/* Paper sessions need the experiment store: its database, created and migrated by the experiment
API's migration Job. Fails the render with the fix otherwise. */}}
{{- define "raytrader.paperRequires" -}}
{{- if not .Values.experimentApi.enabled }}
{{- fail "paper.sessions need the experiment store: set experimentApi.enabled=true (its database and migrations hold the paper ledger)" }}
{{- end }}
{{- if not .Values.experimentApi.migrations.enabled }}
{{- fail "paper.sessions need experimentApi.migrations.enabled=true (the paper ledger's tables come with the store's migrations)" }}
{{- end }}
{{- $names := list }}
{{- range .Values.paper.sessions }}
{{- if has .name $names }}
{{- fail (printf "paper.sessions: the session name %q appears twice" .name) }}
{{- end }}
{{- $names = append $names .name }}
{{- end }}
{{- end }}
