#!/usr/bin/env bash
# Local MLflow dev server: sqlite backend + local artifact dir, artifacts served by the server,
# listening on 127.0.0.1 only. Point a search at it with --tracking-uri http://127.0.0.1:$PORT.
#
#   mlflow/dev_server.sh [DIR]        # DIR defaults to ./w2s_runs/mlflow-server
#   MLFLOW_PORT=5001 mlflow/dev_server.sh
#
# To browse an embedded search (no server; the default) open its own database instead:
#   mlflow ui --backend-store-uri sqlite:///<workdir>/mlflow.db
set -euo pipefail

DIR="${1:-${W2S_MLFLOW_DIR:-./w2s_runs/mlflow-server}}"
PORT="${MLFLOW_PORT:-5000}"
mkdir -p "$DIR/mlartifacts"
DIR="$(cd "$DIR" && pwd)"

echo "MLflow dev server: http://127.0.0.1:$PORT  (runs: $DIR/mlflow.db, artifacts: $DIR/mlartifacts)" >&2
exec mlflow server \
  --backend-store-uri "sqlite:///$DIR/mlflow.db" \
  --serve-artifacts \
  --artifacts-destination "$DIR/mlartifacts" \
  --host 127.0.0.1 \
  --port "$PORT" \
  --workers "${MLFLOW_WORKERS:-1}"
