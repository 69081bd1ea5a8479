#!/bin/sh
# Entrypoint of the meritorder image (deploy/container/Containerfile), and the same start as a
# plain process: `MERITORDER_CONFIG=deploy/config.yaml deploy/container/entrypoint.sh`.
#
# With no arguments, or only options, it runs `meritorder serve` configured from the environment
# (options given are appended, so they win). With a command (`validate FILE`, `explain ...`) it
# runs that meritorder command instead.
#
#   MERITORDER_CONFIG        policy file              /etc/meritorder/policy.yaml
#   MERITORDER_HOST          gRPC bind address        0.0.0.0
#   MERITORDER_PORT          gRPC port (ext_proc, Router API, grpc.health.v1)   50051
#   MERITORDER_METRICS_PORT  Prometheus /metrics port; empty: no metrics        9464
#   MERITORDER_CLASSIFIER    on | off (off: keyword and request signals only)   on
#   MERITORDER_DEVICE        auto | cpu (cpu: never use the CUDA provider)      auto
#   MERITORDER_MODEL_DIR     classifier model directory; empty: the shipped one
#   MERITORDER_STATE_STORE  redis://host:port/db: budgets shared by every replica; empty: per pod
#   MERITORDER_STATE_STORE_DOWN  local | fail: when Redis is unreachable           local
#   OTEL_*                   read by the router itself (OTEL_EXPORTER_OTLP_ENDPOINT, ...)
set -eu

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec meritorder "$@"
fi

config="${MERITORDER_CONFIG:-/etc/meritorder/policy.yaml}"
if [ ! -r "$config" ]; then
    echo "entrypoint: policy file $config is not readable; mount it there or set MERITORDER_CONFIG" >&2
    exit 2
fi

set -- serve --json-logs --config "$config" \
    --host "${MERITORDER_HOST:-0.0.0.0}" --port "${MERITORDER_PORT:-50051}" "$@"
metrics_port="${MERITORDER_METRICS_PORT-9464}"
if [ -n "$metrics_port" ]; then
    set -- "$@" --metrics-port "$metrics_port"
fi
case "${MERITORDER_CLASSIFIER:-on}" in
    on) ;;
    off) set -- "$@" --no-classifier ;;
    *) echo "entrypoint: MERITORDER_CLASSIFIER must be on or off, not ${MERITORDER_CLASSIFIER}" >&2; exit 2 ;;
esac
case "${MERITORDER_DEVICE:-auto}" in
    auto) ;;
    cpu) set -- "$@" --cpu ;;
    *) echo "entrypoint: MERITORDER_DEVICE must be auto or cpu, not ${MERITORDER_DEVICE}" >&2; exit 2 ;;
esac
if [ -n "${MERITORDER_MODEL_DIR:-}" ]; then
    set -- "$@" --model-dir "$MERITORDER_MODEL_DIR"
fi
if [ -n "${MERITORDER_STATE_STORE:-}" ]; then
    set -- "$@" --state-store "$MERITORDER_STATE_STORE" \
        --state-store-down "${MERITORDER_STATE_STORE_DOWN:-local}"
fi

# exec: the router is PID 1's direct replacement, so SIGTERM from the kubelet reaches it and it
# drains open streams before exiting.
exec meritorder "$@"
