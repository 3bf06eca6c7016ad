#!/usr/bin/env bash
# The spark image's entry point.
#
# Spark on Kubernetes starts this image's driver and executor pods with the role as the first
# argument and everything else in the environment (Spark's contract for images, from
# resource-managers/kubernetes in Spark's source):
#   driver ARGS...  the driver pod: spark-submit in client mode, bound to the pod's address
#                   (SPARK_DRIVER_BIND_ADDRESS), with the arguments Spark passes (properties
#                   file, main class or file, application arguments).
#   executor        an executor pod: KubernetesExecutorBackend, configured by SPARK_DRIVER_URL,
#                   SPARK_EXECUTOR_{ID,CORES,MEMORY,POD_IP,POD_NAME}, SPARK_APPLICATION_ID,
#                   SPARK_RESOURCE_PROFILE_ID, SPARK_CLASSPATH and the JVM options in
#                   SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ...
# Anything else keeps the image's earlier behaviour: no argument or options only run the
# aggregation job (cryptopipe-aggregate); a command runs as given.
set -euo pipefail

spark_classpath() {
  # Spark's conf folder (mounted by Spark) and Hadoop's first, then extra entries, then Spark.
  local path="${SPARK_HOME}/jars/*"
  if [ -n "${SPARK_CLASSPATH:-}" ]; then path="${SPARK_CLASSPATH}:${path}"; fi
  if [ -n "${HADOOP_CONF_DIR:-}" ]; then path="${HADOOP_CONF_DIR}:${path}"; fi
  if [ -n "${SPARK_CONF_DIR:-}" ]; then path="${SPARK_CONF_DIR}:${path}"; fi
  printf '%s' "${path}"
}

run_driver() {
  : "${SPARK_DRIVER_BIND_ADDRESS:?the driver pod must set SPARK_DRIVER_BIND_ADDRESS}"
  # Client mode: the pod is the driver; cluster mode would submit yet another driver pod.
  exec "${SPARK_HOME}/bin/spark-submit" \
    --deploy-mode client \
    --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS}" \
    --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS}" \
    "$@"
}

run_executor() {
  local name
  for name in SPARK_DRIVER_URL SPARK_EXECUTOR_ID SPARK_EXECUTOR_CORES SPARK_EXECUTOR_MEMORY \
    SPARK_APPLICATION_ID SPARK_EXECUTOR_POD_IP; do
    if [ -z "${!name:-}" ]; then
      echo "entrypoint: executor pod without ${name}" >&2
      exit 64
    fi
  done
  # One JVM option per variable, numbered from 0 without gaps.
  local -a java_options=()
  local index=0 option
  while option="SPARK_JAVA_OPT_${index}" && [ -n "${!option+set}" ]; do
    java_options+=("${!option}")
    index=$((index + 1))
  done
  exec "${JAVA_HOME}/bin/java" \
    "${java_options[@]}" \
    "-Xms${SPARK_EXECUTOR_MEMORY}" "-Xmx${SPARK_EXECUTOR_MEMORY}" \
    -cp "$(spark_classpath)" \
    org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
    --driver-url "${SPARK_DRIVER_URL}" \
    --executor-id "${SPARK_EXECUTOR_ID}" \
    --cores "${SPARK_EXECUTOR_CORES}" \
    --app-id "${SPARK_APPLICATION_ID}" \
    --hostname "${SPARK_EXECUTOR_POD_IP}" \
    --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
    --podName "${SPARK_EXECUTOR_POD_NAME:-${HOSTNAME}}"
}

case "${1:-}" in
  driver)
    shift
    run_driver "$@"
    ;;
  executor)
    shift
    run_executor
    ;;
  "" | -*)
    exec cryptopipe-aggregate "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
