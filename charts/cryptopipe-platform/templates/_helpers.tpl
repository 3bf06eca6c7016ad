{{/* The prefix of every resource name (fixed names the operator's configuration expects). */}}
{{- define "platform.prefix" -}}
{{- .Values.platformName | trunc 40 | trimSuffix "-" }}
{{- end }}

{{- define "platform.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "platform.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component: include "platform.selectorLabels" (list . "hdfs-namenode") */}}
{{- define "platform.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "platform.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Standard labels of one component: include "platform.labels" (list . "hdfs-namenode") */}}
{{- define "platform.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "platform.chart" $root }}
{{ include "platform.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: cryptopipe
{{- end }}

{{/* One of our images: include "platform.image" (list . "hadoop") */}}
{{- define "platform.image" -}}
{{- $root := index . 0 -}}
{{- $repository := index $root.Values.image.repositories (index . 1) }}
{{- $tag := default $root.Chart.AppVersion $root.Values.image.tag }}
{{- if $root.Values.image.registry }}
{{- printf "%s/%s:%s" $root.Values.image.registry $repository $tag }}
{{- else }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}
{{- end }}

{{/* Pod-level settings every pod of ours shares: pull secrets and scheduling. */}}
{{- define "platform.podScheduling" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.scheduling.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.scheduling.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.scheduling.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* StatefulSet claims follow persistence.keepOnUninstall. */}}
{{- define "platform.claimRetention" -}}
persistentVolumeClaimRetentionPolicy:
  whenDeleted: {{ ternary "Retain" "Delete" .Values.persistence.keepOnUninstall }}
  whenScaled: Retain
{{- end }}

{{/* A volume claim template: include "platform.claim" (list . "data" "10Gi") */}}
{{- define "platform.claim" -}}
{{- $root := index . 0 -}}
- metadata:
    name: {{ index . 1 }}
  spec:
    accessModes: [ReadWriteOnce]
    {{- with $root.Values.persistence.storageClass }}
    storageClassName: {{ . | quote }}
    {{- end }}
    resources:
      requests:
        storage: {{ index . 2 }}
{{- end }}

{{/* Hadoop XML configuration from a map of properties (sorted, so renders are stable). */}}
{{- define "platform.hadoopXml" -}}
<?xml version="1.0"?>
<configuration>
{{- range $key, $value := . }}
  <property><name>{{ $key }}</name><value>{{ $value }}</value></property>
{{- end }}
</configuration>
{{- end }}

{{- define "platform.namenodeHost" -}}
{{- printf "%s-hdfs-namenode" (include "platform.prefix" .) }}
{{- end }}

{{- define "platform.hdfsUrl" -}}
{{- printf "hdfs://%s:%v" (include "platform.namenodeHost" .) .Values.hdfs.namenode.ports.rpc }}
{{- end }}

{{- define "platform.webhdfsUrl" -}}
{{- printf "http://%s:%v" (include "platform.namenodeHost" .) .Values.hdfs.namenode.ports.http }}
{{- end }}

{{- define "platform.metastoreUri" -}}
{{- printf "thrift://%s-hive-metastore:%v" (include "platform.prefix" .) .Values.hiveMetastore.port }}
{{- end }}

{{- define "platform.kafkaBootstrap" -}}
{{- if eq .Values.kafka.provider "external" }}
{{- required "kafka.external.bootstrapServers is required when kafka.provider=external" .Values.kafka.external.bootstrapServers }}
{{- else }}
{{- printf "%s-kafka-bootstrap:9092" (include "platform.prefix" .) }}
{{- end }}
{{- end }}

{{- define "platform.schemaRegistryHost" -}}
{{- printf "%s-schema-registry" (include "platform.prefix" .) }}
{{- end }}

{{/* The registry's Confluent-compatible base URL the clients get; empty with provider none. */}}
{{- define "platform.schemaRegistryUrl" -}}
{{- $registry := .Values.schemaRegistry }}
{{- if eq $registry.provider "apicurio" }}
{{- printf "http://%s.%s.svc:%v/apis/ccompat/v7" (include "platform.schemaRegistryHost" .) .Release.Namespace $registry.apicurio.port }}
{{- else if eq $registry.provider "external" }}
{{- required "schemaRegistry.external.url is required when schemaRegistry.provider=external" $registry.external.url }}
{{- end }}
{{- end }}

{{/* core-site.xml: the chart's properties, then the user's. A connect timeout of 5 s (Hadoop's
default: 20 s): a client keeps trying a NameNode pod's old address until a connect times out, so a
DataNode found a replaced NameNode pod 23 s after it went away, 8 s with this. */}}
{{- define "platform.coreSite" -}}
{{- $props := dict "fs.defaultFS" (include "platform.hdfsUrl" .) "ipc.client.connect.timeout" "5000" }}
{{- include "platform.hadoopXml" (merge (deepCopy .Values.hdfs.coreSite) $props) }}
{{- end }}

{{/* hdfs-site.xml: the chart's properties, then the user's. The DataNode's own client (WebHDFS
writes) retries a file close that beats its block report after 10 ms, not Hadoop's 400 ms. */}}
{{- define "platform.hdfsSite" -}}
{{- $props := dict
  "dfs.replication" (toString .Values.hdfs.replication)
  "dfs.namenode.name.dir" "file:///hadoop/dfs/name/nn"
  "dfs.datanode.data.dir" "file:///hadoop/dfs/data/dn"
  "dfs.namenode.rpc-bind-host" "0.0.0.0"
  "dfs.namenode.http-bind-host" "0.0.0.0"
  "dfs.namenode.servicerpc-bind-host" "0.0.0.0"
  "dfs.namenode.http-address" (printf "%s:%v" (include "platform.namenodeHost" .) .Values.hdfs.namenode.ports.http)
  "dfs.datanode.address" (printf "0.0.0.0:%v" .Values.hdfs.datanode.ports.data)
  "dfs.datanode.http.address" (printf "0.0.0.0:%v" .Values.hdfs.datanode.ports.http)
  "dfs.datanode.ipc.address" (printf "0.0.0.0:%v" .Values.hdfs.datanode.ports.ipc)
  "dfs.webhdfs.enabled" "true"
  "dfs.permissions.enabled" "false"
  "dfs.namenode.safemode.extension" "0"
  "dfs.namenode.datanode.registration.ip-hostname-check" "false"
  "dfs.client.use.datanode.hostname" "false"
  "dfs.datanode.use.datanode.hostname" "false"
  "dfs.client.block.write.locateFollowingBlock.initial.delay.ms" "10"
  "dfs.client.block.write.locateFollowingBlock.retries" "10"
}}
{{- include "platform.hadoopXml" (merge (deepCopy .Values.hdfs.hdfsSite) $props) }}
{{- end }}

{{- define "platform.dbSecretName" -}}
{{- default (printf "%s-hive-metastore-db" (include "platform.prefix" .)) .Values.hiveMetastore.database.existingSecret }}
{{- end }}

{{- define "platform.dbHost" -}}
{{- if .Values.hiveMetastore.database.external.enabled }}
{{- required "hiveMetastore.database.external.host is required with an external database" .Values.hiveMetastore.database.external.host }}
{{- else }}
{{- printf "%s-postgres" (include "platform.prefix" .) }}
{{- end }}
{{- end }}

{{- define "platform.dbPort" -}}
{{- if .Values.hiveMetastore.database.external.enabled }}{{ .Values.hiveMetastore.database.external.port }}{{ else }}5432{{ end }}
{{- end }}

{{/* metastore-site.xml: no secret in it; the password comes from the environment. The standalone
metastore has no hive-exec: its expression proxy and background tasks are named explicitly
(the defaults live in hive-exec and fail the start). */}}
{{- define "platform.metastoreSite" -}}
{{- $db := .Values.hiveMetastore.database }}
{{- $props := dict
  "javax.jdo.option.ConnectionDriverName" "org.postgresql.Driver"
  "javax.jdo.option.ConnectionURL" (printf "jdbc:postgresql://%s:%s/%s" (include "platform.dbHost" .) (include "platform.dbPort" .) $db.name)
  "javax.jdo.option.ConnectionUserName" $db.username
  "javax.jdo.option.ConnectionPassword" "${env.METASTORE_DB_PASSWORD}"
  "metastore.thrift.uris" (include "platform.metastoreUri" .)
  "metastore.thrift.port" (toString .Values.hiveMetastore.port)
  "metastore.warehouse.dir" (printf "%s%s" (include "platform.hdfsUrl" .) .Values.hiveMetastore.warehouseDir)
  "metastore.metadata.transformer.class" " "
  "metastore.schema.verification" "true"
  "datanucleus.autoCreateSchema" "false"
  "metastore.event.db.notification.api.auth" "false"
  "metastore.expression.proxy" "org.apache.hadoop.hive.metastore.DefaultPartitionExpressionProxy"
  "metastore.task.threads.always" "org.apache.hadoop.hive.metastore.events.EventCleanerTask,org.apache.hadoop.hive.metastore.RuntimeStatsCleanerTask,org.apache.hadoop.hive.metastore.MaterializationsRebuildLockCleanerTask"
}}
{{- include "platform.hadoopXml" (merge (deepCopy .Values.hiveMetastore.config) $props) }}
{{- end }}

{{/* The values the cryptopipe-operator chart needs for this platform (its `platform:` key). */}}
{{- define "platform.operatorValues" -}}
platform:
  kafka:
    mode: {{ .Values.kafka.provider }}
    bootstrapServers: {{ include "platform.kafkaBootstrap" . | quote }}
    cluster: {{ include "platform.prefix" . | quote }}
    clusterNamespace: {{ .Release.Namespace | quote }}
    schemaRegistryUrl: {{ include "platform.schemaRegistryUrl" . | quote }}
    {{- if eq .Values.kafka.provider "external" }}
    securityProtocol: {{ .Values.kafka.external.securityProtocol | quote }}
    {{- if hasPrefix "SASL_" .Values.kafka.external.securityProtocol }}
    saslMechanism: {{ .Values.kafka.external.saslMechanism | quote }}
    {{- end }}
    authSecret: {{ .Values.kafka.external.authSecret | quote }}
    {{- if .Values.kafka.external.manageUsers }}
    manageUsers: true
    adminSecret: {{ required "kafka.external.adminSecret is required with manageUsers" .Values.kafka.external.adminSecret | quote }}
    {{- end }}
    {{- end }}
  storage:
    hdfsUrl: {{ include "platform.hdfsUrl" . | quote }}
    webhdfsUrl: {{ include "platform.webhdfsUrl" . | quote }}
    hiveMetastoreUri: {{ include "platform.metastoreUri" . | quote }}
  spark:
    serviceAccount: {{ printf "%s-spark" (include "platform.prefix" .) | quote }}
  dashboard:
    serviceAccount: {{ printf "%s-dashboard" (include "platform.prefix" .) | quote }}
  pools:
    {{- toYaml .Values.pools | nindent 4 }}
{{- end }}

{{/* Who may reach the platform's services (networkPolicy): NetworkPolicy peers. */}}
{{- define "platform.networkPolicySources" -}}
{{- $pipelineNamespaces := .Values.networkPolicy.pipelineNamespaces | default .Values.spark.namespaces | default (list .Release.Namespace) }}
{{- range $pipelineNamespaces }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ . }}
  podSelector:
    matchLabels:
      app.kubernetes.io/managed-by: cryptopipe-operator
{{- end }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .Values.networkPolicy.operatorNamespace | default .Release.Namespace }}
  podSelector:
    matchLabels:
      app.kubernetes.io/name: cryptopipe-operator
- podSelector:
    matchLabels:
      app.kubernetes.io/instance: {{ .Release.Name }}
{{- with .Values.networkPolicy.extraSources }}
{{ toYaml . }}
{{- end }}
{{- end }}
