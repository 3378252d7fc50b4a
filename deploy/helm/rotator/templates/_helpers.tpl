{{/* Names, labels and the pieces the daemon and the CronJob share. */}}

{{- define "rotator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the release name alone when it already contains the chart's
(release `rotator` gives `rotator`, the names of deploy/overlays/). */}}
{{- define "rotator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "rotator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rotator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rotator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "rotator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rotator
{{- end }}

{{/* daemon or reconcile: the component label of the workload, as in deploy/overlays/. */}}
{{- define "rotator.component" -}}
{{- if eq .Values.mode "daemon" }}daemon{{ else }}reconcile{{ end }}
{{- end }}

{{- define "rotator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rotator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rotator.configMapName" -}}
{{- default (printf "%s-config" (include "rotator.fullname" .)) .Values.existingConfigMap }}
{{- end }}

{{- define "rotator.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The configuration as rendered: `config`, with each hook credential that comes from a
Secret read from its variable instead of Vault (rotator refuses both at once). Checks that it
agrees with the pod: the projected token's path and the listening port. */}}
{{- define "rotator.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $server := default (dict) $config.server }}
{{- if .Values.hookSecrets.token.secretName }}
{{- $_ := unset $server "hook_token_vault" }}
{{- $_ := set $server "hook_token_env" "ROTATOR_HOOK_TOKEN" }}
{{- end }}
{{- if .Values.hookSecrets.hmacKey.secretName }}
{{- $_ := unset $server "hook_hmac_key_vault" }}
{{- $_ := set $server "hook_hmac_key_env" "ROTATOR_HOOK_HMAC_KEY" }}
{{- end }}
{{- if $server }}{{ $_ := set $config "server" $server }}{{ end }}
{{- $auth := (default (dict) $config.vault).auth | default (dict) }}
{{- if eq (toString $auth.method) "kubernetes" }}
{{- $want := printf "%s/token" (trimSuffix "/" .Values.vaultAuth.mountPath) }}
{{- if ne (toString $auth.jwt_path) $want }}
{{- fail (printf "config.vault.auth.jwt_path must be %s, where vaultAuth.mountPath mounts the projected token (it is %q)" $want (toString $auth.jwt_path)) }}
{{- end }}
{{- end }}
{{- $listen := toString (default "0.0.0.0:8080" $server.listen) }}
{{- $port := regexFind "[0-9]+$" $listen }}
{{- if ne $port (toString .Values.service.port) }}
{{- fail (printf "config.server.listen (%s) must listen on service.port (%v)" $listen .Values.service.port) }}
{{- end }}
{{- toToml $config }}
{{- end }}

{{/* The pod spec of the daemon and of the CronJob's Jobs. */}}
{{- define "rotator.podSpec" -}}
{{- $daemon := eq .Values.mode "daemon" }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if not $daemon }}
restartPolicy: Never
{{- end }}
serviceAccountName: {{ include "rotator.serviceAccountName" . }}
# Only the projected Vault token below is mounted, not the API-server token.
automountServiceAccountToken: false
enableServiceLinks: false
{{- if $daemon }}
terminationGracePeriodSeconds: {{ .Values.daemon.terminationGracePeriodSeconds }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
containers:
  - name: rotator
    image: {{ include "rotator.image" . }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args: [{{ if $daemon }}"run"{{ else }}"reconcile"{{ end }}]
    env:
      - name: ROTATOR_CONFIG
        value: /etc/rotator/rotator.toml
      {{- with .Values.hookSecrets.token }}
      {{- if .secretName }}
      - name: ROTATOR_HOOK_TOKEN
        valueFrom:
          secretKeyRef:
            name: {{ .secretName }}
            key: {{ .key }}
            optional: false
      {{- end }}
      {{- end }}
      {{- with .Values.hookSecrets.hmacKey }}
      {{- if .secretName }}
      - name: ROTATOR_HOOK_HMAC_KEY
        valueFrom:
          secretKeyRef:
            name: {{ .secretName }}
            key: {{ .key }}
            optional: false
      {{- end }}
      {{- end }}
      {{- with .Values.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- if $daemon }}
    ports:
      - name: http
        containerPort: {{ .Values.service.port }}
        protocol: TCP
    startupProbe:
      httpGet:
        path: /healthz
        port: http
      periodSeconds: 2
      timeoutSeconds: 2
      failureThreshold: 30
    livenessProbe:
      httpGet:
        path: /healthz
        port: http
      periodSeconds: 20
      timeoutSeconds: 3
      failureThreshold: 3
    # Ready when the scheduler runs and Vault answers with a valid token.
    readinessProbe:
      httpGet:
        path: /readyz
        port: http
      periodSeconds: 10
      timeoutSeconds: 3
      failureThreshold: 3
    {{- end }}
    resources:
      {{- toYaml .Values.resources | nindent 6 }}
    securityContext:
      {{- toYaml .Values.securityContext | nindent 6 }}
    volumeMounts:
      - name: config
        mountPath: /etc/rotator
        readOnly: true
      - name: vault-token
        mountPath: {{ .Values.vaultAuth.mountPath }}
        readOnly: true
      - name: tmp
        mountPath: /tmp
      {{- with .Values.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "rotator.configMapName" . }}
  # rotator's Vault login token: audience and lifetime of vaultAuth, renewed by the kubelet.
  - name: vault-token
    projected:
      sources:
        - serviceAccountToken:
            audience: {{ .Values.vaultAuth.audience }}
            expirationSeconds: {{ .Values.vaultAuth.expirationSeconds }}
            path: token
  # The only writable place ($TMPDIR); counts against the memory limit.
  - name: tmp
    emptyDir:
      medium: Memory
      sizeLimit: {{ .Values.tmpSizeLimit }}
  {{- with .Values.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* checkov skips, with their reasons, for what a choice in the values brings. */}}
{{- define "rotator.checkovSkips" -}}
{{- if or .Values.hookSecrets.token.secretName .Values.hookSecrets.hmacKey.secretName }}
checkov.io/skip1: CKV_K8S_35=rotator reads a hook credential from a variable or from Vault only; hookSecrets chose the variable (the default reads Vault)
{{- end }}
{{- end }}

{{/* Pod labels and annotations: the workload's labels, then podLabels and podAnnotations. */}}
{{- define "rotator.podMetadata" -}}
labels:
  {{- include "rotator.labels" . | nindent 2 }}
  app.kubernetes.io/component: {{ include "rotator.component" . }}
  {{- with .Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- $annotations := deepCopy .Values.podAnnotations }}
{{- if and (eq .Values.mode "daemon") (not .Values.existingConfigMap) }}
{{- /* A new configuration restarts the daemon on `helm upgrade` (it reads it once, at start). */}}
{{- $_ := set $annotations "checksum/config" (include "rotator.config" . | sha256sum) }}
{{- end }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The test Job's pods: not selected by the NetworkPolicy's podSelector (their egress is not
rotator's), admitted by its ingress. */}}
{{- define "rotator.testSelectorLabels" -}}
app.kubernetes.io/name: {{ include "rotator.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
{{- end }}
