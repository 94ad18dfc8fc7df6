{{/* Names, labels, images and the pieces every pod shares. */}}

{{- define "magpie.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "magpie.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "magpie.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "magpie.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The name of one component's objects: <fullname>-<component>. */}}
{{- define "magpie.component" -}}
{{- printf "%s-%s" (include "magpie.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of a component (dict "root" $ "component" NAME). Training Jobs, which
the worker creates, carry app.kubernetes.io/name=magpie and component=trainer. */}}
{{- define "magpie.selectorLabels" -}}
app.kubernetes.io/name: {{ include "magpie.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "magpie.labels" -}}
{{ include "magpie.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: magpie
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* An image reference pinned by digest (dict "root" $ "image" .Values.images.X). */}}
{{- define "magpie.image" -}}
{{- $image := .image -}}
{{- if $image.digest -}}
{{- printf "%s:%s@%s" $image.repository (toString $image.tag) $image.digest -}}
{{- else if .root.Values.images.allowUnpinned -}}
{{- printf "%s:%s" $image.repository (toString $image.tag) -}}
{{- else -}}
{{- fail (printf "image %s has no digest: set its digest (or images.allowUnpinned)" $image.repository) -}}
{{- end -}}
{{- end -}}

{{/* The Secret with the connection URLs; existingSecret is its deprecated name. */}}
{{- define "magpie.secretName" -}}
{{- coalesce .Values.existingSecret .Values.secrets.name -}}
{{- end -}}

{{- define "magpie.claimName" -}}
{{- if eq .Values.artifacts.type "existingClaim" -}}
{{- required "artifacts.existingClaim is required with artifacts.type existingClaim" .Values.artifacts.existingClaim -}}
{{- else -}}
{{- include "magpie.component" (dict "root" . "component" "artifacts") -}}
{{- end -}}
{{- end -}}

{{- define "magpie.artifactDir" -}}/var/lib/magpie/artifacts{{- end -}}
{{- define "magpie.authDir" -}}/var/run/magpie/auth{{- end -}}
{{- define "magpie.tlsDir" -}}/var/run/magpie/tls{{- end -}}

{{/* The plaintext health-only port of a service with TLS, for kubelet probes (no TLS). */}}
{{- define "magpie.probePort" -}}{{ add . 2000 }}{{- end -}}

{{/* Authentication and TLS of a gRPC server (one of the five services, "server" true), of
a client (the helm test pod) or of the web console ("console" true): its environment,
volume mounts and volumes, from the Secrets of .Values.security, each mounted whole (a
subPath mount never sees the Secret's updates) and readable by the pod's group alone. A
client gets only the token it presents; the console only the tokens file (it checks the
people who sign in, and presents their tokens, none of its own).
(dict "root" $ "server" BOOL ["console" true]) */}}
{{- define "magpie.securityEnv" -}}
{{- $sec := .root.Values.security -}}
{{- if $sec.auth.enabled }}
{{- if or .server .console }}
- {name: MAGPIE_AUTH_TOKENS_FILE, value: {{ include "magpie.authDir" . }}/callers.json}
{{- end }}
{{- if not .console }}
- {name: MAGPIE_AUTH_TOKEN_FILE, value: {{ include "magpie.authDir" . }}/service-token}
{{- end }}
{{- end }}
{{- if $sec.tls.enabled }}
- {name: MAGPIE_TLS_CERT_FILE, value: {{ include "magpie.tlsDir" . }}/tls.crt}
- {name: MAGPIE_TLS_KEY_FILE, value: {{ include "magpie.tlsDir" . }}/tls.key}
- {name: MAGPIE_TLS_CA_FILE, value: {{ include "magpie.tlsDir" . }}/ca.crt}
{{- if .server }}
- {name: MAGPIE_TLS_CLIENT_AUTH, value: {{ $sec.tls.clientAuth | quote }}}
{{- end }}
{{- end }}
{{- if .server }}
- {name: MAGPIE_REFLECTION_ENABLED, value: {{ $sec.reflection | quote }}}
{{- end }}
{{- end -}}

{{- define "magpie.securityMounts" -}}
{{- if .root.Values.security.auth.enabled }}
- {name: auth, mountPath: {{ include "magpie.authDir" . }}, readOnly: true}
{{- end }}
{{- if .root.Values.security.tls.enabled }}
- {name: tls, mountPath: {{ include "magpie.tlsDir" . }}, readOnly: true}
{{- end }}
{{- end -}}

{{- define "magpie.securityVolumes" -}}
{{- $sec := .root.Values.security -}}
{{- if $sec.auth.enabled }}
- name: auth
  secret:
    secretName: {{ $sec.auth.secretName }}
    defaultMode: 288 # 0440
    {{- if .console }}
    items: [{key: callers.json, path: callers.json}]
    {{- else if not .server }}
    items: [{key: service-token, path: service-token}]
    {{- end }}
{{- end }}
{{- if $sec.tls.enabled }}
- name: tls
  secret:
    secretName: {{ $sec.tls.secretName }}
    defaultMode: 288 # 0440
{{- end }}
{{- end -}}
{{- define "magpie.modelRepository" -}}/var/lib/magpie/artifacts/triton/models{{- end -}}

{{/* The restricted pod security context (Pod Security Standards "restricted"). */}}
{{- define "magpie.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "magpie.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment of every Magpie process: the Secret's keys (all, or the fields named in
"secrets"), telemetry (sampling at "sampleRatio", default telemetry.sampleRatio).
(dict "root" $ "component" NAME ["secrets" LIST] ["sampleRatio" NUMBER]) */}}
{{- define "magpie.env" -}}
{{- $root := .root -}}
{{- $secret := include "magpie.secretName" $root -}}
{{- $fields := default (list "databaseUrl" "redisUrl" "brokerUrl" "resultBackend" "userHashKey") .secrets -}}
{{- $ratio := hasKey . "sampleRatio" | ternary .sampleRatio $root.Values.telemetry.sampleRatio -}}
- name: HOME
  value: /tmp
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: NODE_NAME
  valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
{{- range $field := $fields }}
{{- $entry := index $root.Values.secrets $field }}
- name: {{ $entry.key }}
  valueFrom:
    secretKeyRef:
      name: {{ default $secret $entry.name }}
      key: {{ $entry.key }}
      {{- if $entry.optional }}
      optional: true
      {{- end }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: {{ .component }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "deployment.environment={{ $root.Values.telemetry.environment }},k8s.namespace.name={{ $root.Release.Namespace }},k8s.pod.name=$(POD_NAME),k8s.node.name=$(NODE_NAME)"
{{- with $root.Values.telemetry.otlpGrpcEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: grpc
- name: OTEL_TRACES_SAMPLER
  value: parentbased_traceidratio
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $ratio | quote }}
{{- end }}
{{- end -}}

{{- define "magpie.envFrom" -}}
- configMapRef:
    name: {{ include "magpie.fullname" . }}
{{- end -}}

{{/* Scheduling of a pod: defaults merged with a component's own, topology spread.
(dict "root" $ "component" NAME "nodeSelector" MAP "tolerations" LIST) */}}
{{- define "magpie.scheduling" -}}
{{- $root := .root -}}
{{- $defaults := $root.Values.podDefaults -}}
{{- $nodeSelector := merge (dict) (default (dict) .nodeSelector) $defaults.nodeSelector -}}
{{- with $nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $tolerations := concat (default (list) .tolerations) $defaults.tolerations -}}
{{- with $tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $defaults.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $defaults.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- if and $defaults.topologySpread.enabled (not .singleton) }}
topologySpreadConstraints:
  - maxSkew: {{ $defaults.topologySpread.zoneSkew }}
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: {{ $defaults.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "magpie.selectorLabels" . | nindent 8 }}
    matchLabelKeys: [pod-template-hash]
  - maxSkew: {{ $defaults.topologySpread.nodeSkew }}
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: {{ $defaults.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "magpie.selectorLabels" . | nindent 8 }}
    matchLabelKeys: [pod-template-hash]
{{- end }}
{{- with $root.Values.images.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* The init container that writes the Triton model configuration of the profile into the
shared repository, atomically (both the worker and Triton run it: same content). */}}
{{- define "magpie.tritonConfigInit" -}}
- name: triton-config
  image: {{ include "magpie.image" (dict "root" .root "image" .root.Values.images.serving) }}
  imagePullPolicy: {{ .root.Values.images.pullPolicy }}
  command: [/bin/sh, -ec]
  args:
    - |
      repo={{ include "magpie.modelRepository" .root }}
      model={{ .root.Values.config.triton.model }}
      stage="$repo/.config-$POD_NAME"
      rm -rf "$stage"
      magpie model triton-config --target {{ .root.Values.triton.profile }} --out "$stage"
      mkdir -p "$repo/$model"
      for f in "$stage/$model"/*; do mv -f "$f" "$repo/$model/"; done
      rm -rf "$stage"
  env:
    {{- include "magpie.env" (dict "root" .root "component" "triton-config") | nindent 4 }}
  envFrom:
    {{- include "magpie.envFrom" .root | nindent 4 }}
  resources:
    requests: {cpu: 50m, memory: 128Mi}
    limits: {cpu: 500m, memory: 256Mi}
  securityContext:
    {{- include "magpie.securityContext" . | nindent 4 }}
  volumeMounts:
    - {name: tmp, mountPath: /tmp}
    - {name: artifacts, mountPath: {{ include "magpie.artifactDir" .root }}}
{{- end -}}

{{- define "magpie.artifactsVolume" -}}
- name: artifacts
  persistentVolumeClaim:
    claimName: {{ include "magpie.claimName" . }}
{{- end -}}

{{/* An HPA's scale behaviour: scale-down stabilization from the shared values. */}}
{{- define "magpie.hpaBehavior" -}}
behavior:
  scaleDown:
    stabilizationWindowSeconds: {{ .Values.autoscaling.scaleDownStabilizationSeconds }}
    policies:
      - type: Percent
        value: {{ .Values.autoscaling.scaleDownPercent }}
        periodSeconds: 60
  scaleUp:
    stabilizationWindowSeconds: {{ .Values.autoscaling.scaleUpStabilizationSeconds }}
    policies:
      - type: Percent
        value: 100
        periodSeconds: 30
      - type: Pods
        value: 4
        periodSeconds: 30
    selectPolicy: Max
{{- end -}}

{{/* A PodDisruptionBudget for a workload whose replicas can exceed one
(dict "root" $ "component" NAME "replicas" N "maxReplicas" N). */}}
{{- define "magpie.pdb" -}}
{{- if or (gt (int .replicas) 1) (gt (int .maxReplicas) 1) }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "magpie.component" . }}
  labels:
    {{- include "magpie.labels" . | nindent 4 }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "magpie.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}
