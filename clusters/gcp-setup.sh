#!/usr/bin/env bash
# One-time GCP setup for clusters/gcp.yaml: the VPC, firewall rules and worker service account it
# names. Safe to rerun: existing pieces are kept. Uses your gcloud login; writes no keys.
#
#   export W2S_GCP_PROJECT=my-project
#   export W2S_SSH_CIDR="$(curl -s https://checkip.amazonaws.com)/32"   # where you run `ray up`
#   export W2S_BUCKET=my-bucket                   # the GCS bucket W2S_STORAGE points into
#   bash clusters/gcp-setup.sh
#
# Optional: W2S_GCP_REGION (default us-central1, as in gcp.yaml).
#
# Network w2s-ray gets exactly two ingress rules, both for instances tagged w2s-ray:
#   * w2s-ray-internal: all traffic from other instances tagged w2s-ray (intra-cluster);
#   * w2s-ray-ssh: TCP 22 from W2S_SSH_CIDR (ray up / ray dashboard / ray attach use SSH).
# Nothing else is reachable from outside: not the dashboard (8265), the Ray client port (10001),
# nor MLflow (5000).
set -euo pipefail

: "${W2S_GCP_PROJECT:?set W2S_GCP_PROJECT to your GCP project id}"
: "${W2S_SSH_CIDR:?set W2S_SSH_CIDR to the address range you run ray up from, e.g. 203.0.113.7/32}"
: "${W2S_BUCKET:?set W2S_BUCKET to the GCS bucket name that W2S_STORAGE points into}"
case "$W2S_SSH_CIDR" in
  */0) echo "error: W2S_SSH_CIDR=$W2S_SSH_CIDR would open SSH to the whole internet" >&2; exit 2 ;;
  */*) ;;
  *) echo "error: W2S_SSH_CIDR=$W2S_SSH_CIDR is not a CIDR (e.g. 203.0.113.7/32)" >&2; exit 2 ;;
esac

PROJECT="$W2S_GCP_PROJECT"
REGION="${W2S_GCP_REGION:-us-central1}"
NET=w2s-ray
TAG=w2s-ray
WORKER_SA="w2s-ray-worker@$PROJECT.iam.gserviceaccount.com"

exists() { "$@" >/dev/null 2>&1; }

# --- network -------------------------------------------------------------------------------
exists gcloud compute networks describe "$NET" --project "$PROJECT" ||
  gcloud compute networks create "$NET" --project "$PROJECT" --subnet-mode custom
exists gcloud compute networks subnets describe "$NET" --project "$PROJECT" --region "$REGION" ||
  gcloud compute networks subnets create "$NET" --project "$PROJECT" --network "$NET" \
    --region "$REGION" --range 10.42.0.0/20
exists gcloud compute firewall-rules describe w2s-ray-internal --project "$PROJECT" ||
  gcloud compute firewall-rules create w2s-ray-internal --project "$PROJECT" --network "$NET" \
    --direction INGRESS --allow tcp,udp,icmp --source-tags "$TAG" --target-tags "$TAG"
exists gcloud compute firewall-rules describe w2s-ray-ssh --project "$PROJECT" ||
  gcloud compute firewall-rules create w2s-ray-ssh --project "$PROJECT" --network "$NET" \
    --direction INGRESS --allow tcp:22 --source-ranges "$W2S_SSH_CIDR" --target-tags "$TAG"

# --- identity: workers may read and write the storage bucket, nothing more ------------------
# (The head uses the service account Ray creates for it, ray-autoscaler-sa-v1, which may launch
# instances and attach this one to them.)
exists gcloud iam service-accounts describe "$WORKER_SA" --project "$PROJECT" ||
  gcloud iam service-accounts create w2s-ray-worker --project "$PROJECT" \
    --display-name "w2s_ray GPU workers"
gcloud storage buckets add-iam-policy-binding "gs://$W2S_BUCKET" \
  --member "serviceAccount:$WORKER_SA" --role roles/storage.objectAdmin >/dev/null

echo "done: envsubst '\$W2S_GCP_PROJECT' < clusters/gcp.yaml > /tmp/w2s-gcp.yaml && ray up /tmp/w2s-gcp.yaml"
