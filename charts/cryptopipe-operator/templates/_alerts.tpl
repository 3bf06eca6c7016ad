{{/*
The alert rules, as a Prometheus rule file's `groups` (the PrometheusRule's spec.groups, or
the ConfigMap a plain Prometheus loads). Each pages a person only for something they can act on;
docs/operations.md says what to do for each. tests/alerts/ has a promtool unit test per rule.
*/}}
{{- define "cryptopipe-operator.alertGroups" -}}
{{- $r := .Values.monitoring.rules -}}
- name: cryptopipe.pipelines
  rules:
    - alert: CryptopipeDataStale
      # Wall time of the producer's newest acknowledged record: a replay of history is fresh
      # while it publishes. max_over_time keeps the last value while the producer is down.
      expr: |
        time() - max by (namespace, symbol) (
          max_over_time(cryptopipe_producer_last_publish_timestamp_seconds{symbol!="deadletter"}[6h])
        ) > {{ $r.staleDataSeconds }}
      for: {{ $r.staleDataFor }}
      labels:
        severity: page
      annotations:
        summary: "No new {{ "{{" }} $labels.symbol {{ "}}" }} trades for {{ "{{" }} $value | humanizeDuration {{ "}}" }}"
        description: "The producer of {{ "{{" }} $labels.namespace {{ "}}" }} has published no {{ "{{" }} $labels.symbol {{ "}}" }} trade to Kafka for longer than {{ $r.staleDataSeconds }} s. Check the producer pod's logs (exchange connection, Kafka) and its restarts."
        runbook_url: "{{ $r.runbookBase }}#cryptopipedatastale"
    - alert: CryptopipeAggregatorStalled
      # Progress or idle events arrive every trigger while the query runs, with data or not.
      expr: |
        time() - max by (namespace, query) (
          max_over_time(cryptopipe_aggregate_last_progress_timestamp_seconds[6h])
        ) > {{ $r.stalledSeconds }}
      for: {{ $r.stalledFor }}
      labels:
        severity: page
      annotations:
        summary: "Aggregation {{ "{{" }} $labels.query {{ "}}" }} has not progressed for {{ "{{" }} $value | humanizeDuration {{ "}}" }}"
        description: "The Spark query {{ "{{" }} $labels.query {{ "}}" }} in {{ "{{" }} $labels.namespace {{ "}}" }} reported no progress for longer than {{ $r.stalledSeconds }} s: the driver is gone, restarting, or stuck. Check the SparkApplication's state and the driver's log."
        runbook_url: "{{ $r.runbookBase }}#cryptopipeaggregatorstalled"
    - alert: CryptopipeAggregatorFallingBehind
      expr: |
        min_over_time(cryptopipe_aggregate_offsets_behind_latest[{{ $r.lagWindow }}]) > {{ $r.lagMinRecords }}
        and deriv(cryptopipe_aggregate_offsets_behind_latest[{{ $r.lagWindow }}]) > 0
      for: {{ $r.lagFor }}
      labels:
        severity: page
      annotations:
        summary: "Aggregation {{ "{{" }} $labels.query {{ "}}" }} is {{ "{{" }} $value | humanize {{ "}}" }} records behind and falling further"
        description: "The query's backlog stayed above {{ $r.lagMinRecords }} records and grew for {{ $r.lagWindow }}: trades arrive faster than Spark aggregates them. Give the pool's aggregator more cores or memory (pools.aggregator*), or split the pool."
        runbook_url: "{{ $r.runbookBase }}#cryptopipeaggregatorfallingbehind"
    - alert: CryptopipeDeadLetters
      expr: |
        sum by (namespace, reason) (rate(cryptopipe_producer_dead_letters_total[5m])) > {{ $r.deadLetterRatePerSecond }}
      for: {{ $r.deadLetterFor }}
      labels:
        severity: page
      annotations:
        summary: "{{ "{{" }} $value | humanize {{ "}}" }} dead letters/s ({{ "{{" }} $labels.reason {{ "}}" }})"
        description: "The producer in {{ "{{" }} $labels.namespace {{ "}}" }} sends more than {{ $r.deadLetterRatePerSecond }} inputs per second to the dead-letter topic: the exchange's messages no longer match what we parse. Read the reasons in the dead-letter topic."
        runbook_url: "{{ $r.runbookBase }}#cryptopipedeadletters"
- name: cryptopipe.models
  rules:
    - alert: CryptopipeModelBelowBaseline
      expr: |
        max by (namespace, symbol) (cryptopipe_predictor_versions_below_baseline) >= {{ $r.belowBaselineRetrains }}
      labels:
        severity: warning
      annotations:
        summary: "{{ "{{" }} $labels.symbol {{ "}}" }}: {{ "{{" }} $value {{ "}}" }} trainings in a row did not beat their baseline"
        description: "The last {{ "{{" }} $value {{ "}}" }} versions of {{ "{{" }} $labels.symbol {{ "}}" }}'s model lost to a naive baseline out of sample; a baseline or an older version serves. Read the training reports (dashboard, Pipelines page) before changing spec.model."
        runbook_url: "{{ $r.runbookBase }}#cryptopipemodelbelowbaseline"
    - alert: CryptopipeModelRegistryUnreadable
      expr: |
        sum by (namespace, symbol) (rate(cryptopipe_predictor_registry_read_failures_total[10m])) > 0
      for: {{ $r.serviceDownFor }}
      labels:
        severity: page
      annotations:
        summary: "The predictor cannot read {{ "{{" }} $labels.symbol {{ "}}" }}'s model registry"
        description: "Reads of the registry fail; forecasts go on from what was loaded, but no new version can serve. Check HDFS (CryptopipePlatformServiceDown) and the registry path."
        runbook_url: "{{ $r.runbookBase }}#cryptopipemodelregistryunreadable"
- name: cryptopipe.platform
  rules:
    - alert: CryptopipeOperatorNoLeader
      # absent: no replica is scraped at all (all gone, or not running).
      expr: |
        sum(cryptopipe_operator_leader) < 1 or absent(cryptopipe_operator_leader)
      for: {{ $r.serviceDownFor }}
      labels:
        severity: page
      annotations:
        summary: "No cryptopipe operator replica holds the Lease"
        description: "Nothing reconciles CryptoPipelines: changes are not applied and status is not updated. Check the operator pods and their access to the Lease."
        runbook_url: "{{ $r.runbookBase }}#cryptopipeoperatornoleader"
    - alert: CryptopipeOperatorReconcileErrors
      expr: |
        sum(rate(cryptopipe_operator_reconcile_errors_total[15m]))
          / sum(rate(cryptopipe_operator_reconciles_total[15m])) > {{ $r.reconcileErrorRatio }}
      for: {{ $r.reconcileErrorsFor }}
      labels:
        severity: page
      annotations:
        summary: "{{ "{{" }} $value | humanizePercentage {{ "}}" }} of reconciles fail"
        description: "The operator cannot apply pipelines' children. Its log names the failing requests (RBAC, admission, a missing CRD)."
        runbook_url: "{{ $r.runbookBase }}#cryptopipeoperatorreconcileerrors"
    - alert: CryptopipePlatformServiceDown
      expr: |
        max by (service) (cryptopipe_platform_up{service=~"hdfs|hive-metastore|kafka"}) == 0
      for: {{ $r.serviceDownFor }}
      labels:
        severity: page
      annotations:
        summary: "{{ "{{" }} $labels.service {{ "}}" }} does not answer"
        description: "The operator's probe of {{ "{{" }} $labels.service {{ "}}" }} fails: candles cannot be stored, trainings cannot read or register. Check the platform release's pods."
        runbook_url: "{{ $r.runbookBase }}#cryptopipeplatformservicedown"
{{- end -}}
