#!/usr/bin/env bash
# One-time GCP setup for clusters/gcp.yaml: the VPC, firewall rules and the head and worker service
# accounts it names. Safe to rerun: existing pieces are kept. Uses your gcloud login; writes no keys.
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
HEAD_SA="w2s-ray-head@$PROJECT.iam.gserviceaccount.com"
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

# --- identity: each node kind has its own service account with the narrowest roles that work ---
# workers: read and write the storage bucket, nothing else.
# head: the same bucket (the search driver writes results there), create/delete/label instances
# in this project (roles/compute.instanceAdmin.v1: no firewall, network or IAM changes), and
# attach the worker account to them (roles/iam.serviceAccountUser on that one account only,
# not project-wide). Ray's default head account (ray-autoscaler-sa-v1: compute.admin,
# storage.objectAdmin and serviceAccountUser on the whole project) is not used by any node.
for sa in w2s-ray-head w2s-ray-worker; do
  exists gcloud iam service-accounts describe "$sa@$PROJECT.iam.gserviceaccount.com" --project "$PROJECT" ||
    gcloud iam service-accounts create "$sa" --project "$PROJECT" --display-name "w2s_ray $sa"
done
for member in "serviceAccount:$HEAD_SA" "serviceAccount:$WORKER_SA"; do
  gcloud storage buckets add-iam-policy-binding "gs://$W2S_BUCKET" \
    --member "$member" --role roles/storage.objectAdmin >/dev/null
done
gcloud projects add-iam-policy-binding "$PROJECT" --condition=None \
  --member "serviceAccount:$HEAD_SA" --role roles/compute.instanceAdmin.v1 >/dev/null
gcloud iam service-accounts add-iam-policy-binding "$WORKER_SA" --project "$PROJECT" \
  --member "serviceAccount:$HEAD_SA" --role roles/iam.serviceAccountUser >/dev/null

echo "done: envsubst '\$W2S_GCP_PROJECT' < clusters/gcp.yaml > /tmp/w2s-gcp.yaml && ray up /tmp/w2s-gcp.yaml"
