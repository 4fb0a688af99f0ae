#!/usr/bin/env bash
# One-time AWS setup for clusters/aws.yaml: the security group it defines and the IAM instance
# profiles it names. Safe to rerun: existing pieces are kept. Uses your normal AWS CLI credentials; writes none.
#
#   export W2S_SSH_CIDR="$(curl -s https://checkip.amazonaws.com)/32"   # where you run `ray up`
#   export W2S_BUCKET=my-bucket                   # the S3 bucket W2S_STORAGE points into
#   bash clusters/aws-setup.sh
#
# Optional: AWS_REGION (default us-west-2, as in aws.yaml), W2S_VPC_ID (default: the default VPC;
# if you change it, also set SubnetIds in aws.yaml's node_configs).
#
# Security group w2s-ray-sg gets exactly two inbound rules:
#   * all traffic from members of w2s-ray-sg itself (the cluster's nodes talking to each other);
#   * TCP 22 from W2S_SSH_CIDR (ray up / ray dashboard / ray attach tunnel over SSH).
# Nothing else is reachable from outside: not the dashboard (8265), the Ray client port (10001),
# nor MLflow (5000).
set -euo pipefail

: "${W2S_SSH_CIDR:?set W2S_SSH_CIDR to the address range you run ray up from, e.g. 203.0.113.7/32}"
: "${W2S_BUCKET:?set W2S_BUCKET to the S3 bucket name that W2S_STORAGE points into}"
case "$W2S_SSH_CIDR" in
  */0) echo "error: W2S_SSH_CIDR=$W2S_SSH_CIDR would open SSH to the whole internet" >&2; exit 2 ;;
  */*) ;;
  *) echo "error: W2S_SSH_CIDR=$W2S_SSH_CIDR is not a CIDR (e.g. 203.0.113.7/32)" >&2; exit 2 ;;
esac

REGION="${AWS_REGION:-us-west-2}"
SG_NAME=w2s-ray-sg
HEAD_ROLE=w2s-ray-head
WORKER_ROLE=w2s-ray-worker

# --- network -------------------------------------------------------------------------------
VPC_ID="${W2S_VPC_ID:-$(aws ec2 describe-vpcs --region "$REGION" \
  --filters Name=is-default,Values=true --query 'Vpcs[0].VpcId' --output text)}"
SG_ID="$(aws ec2 describe-security-groups --region "$REGION" \
  --filters "Name=vpc-id,Values=$VPC_ID" "Name=group-name,Values=$SG_NAME" \
  --query 'SecurityGroups[0].GroupId' --output text)"
if [ "$SG_ID" = "None" ]; then
  SG_ID="$(aws ec2 create-security-group --region "$REGION" --vpc-id "$VPC_ID" \
    --group-name "$SG_NAME" --description "w2s_ray: intra-cluster traffic and SSH from one CIDR" \
    --query GroupId --output text)"
  aws ec2 authorize-security-group-ingress --region "$REGION" --group-id "$SG_ID" \
    --ip-permissions "IpProtocol=-1,UserIdGroupPairs=[{GroupId=$SG_ID}]"
  aws ec2 authorize-security-group-ingress --region "$REGION" --group-id "$SG_ID" \
    --protocol tcp --port 22 --cidr "$W2S_SSH_CIDR"
  echo "created security group $SG_NAME ($SG_ID) in $VPC_ID"
else
  echo "keeping existing security group $SG_NAME ($SG_ID); check its rules with:"
  echo "  aws ec2 describe-security-groups --region $REGION --group-ids $SG_ID"
fi

# --- IAM: one role + instance profile per node kind ------------------------------------------
TRUST='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
BUCKET_POLICY="$(cat <<JSON
{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":["s3:ListBucket","s3:GetBucketLocation"],"Resource":"arn:aws:s3:::$W2S_BUCKET"},
 {"Effect":"Allow","Action":["s3:GetObject","s3:PutObject","s3:DeleteObject","s3:AbortMultipartUpload"],"Resource":"arn:aws:s3:::$W2S_BUCKET/*"}
]}
JSON
)"

for role in "$HEAD_ROLE" "$WORKER_ROLE"; do
  if ! aws iam get-role --role-name "$role" >/dev/null 2>&1; then
    aws iam create-role --role-name "$role" --assume-role-policy-document "$TRUST" >/dev/null
    echo "created role $role"
  fi
  aws iam put-role-policy --role-name "$role" --policy-name w2s-storage \
    --policy-document "$BUCKET_POLICY"
  if ! aws iam get-instance-profile --instance-profile-name "$role" >/dev/null 2>&1; then
    aws iam create-instance-profile --instance-profile-name "$role" >/dev/null
    aws iam add-role-to-instance-profile --instance-profile-name "$role" --role-name "$role"
    echo "created instance profile $role"
  fi
done

# The head's autoscaler launches, tags and terminates workers and hands them the worker role:
# exactly the EC2 calls Ray's AWS node provider makes from the head, nothing more (no
# AmazonEC2FullAccess). The launcher's own setup (AMI lookup, security group, subnets) runs on your
# machine with your credentials during `ray up`, not with this role.
ACCOUNT="$(aws sts get-caller-identity --query Account --output text)"
AUTOSCALER_POLICY="$(cat <<JSON
{"Version":"2012-10-17","Statement":[
 {"Sid":"ReadInstances","Effect":"Allow","Action":["ec2:DescribeInstances","ec2:DescribeInstanceTypes","ec2:DescribeImages"],"Resource":"*"},
 {"Sid":"LaunchWorkers","Effect":"Allow","Action":["ec2:RunInstances","ec2:CreateTags"],"Resource":"*","Condition":{"StringEquals":{"aws:RequestedRegion":"$REGION"}}},
 {"Sid":"ManageOwnNodes","Effect":"Allow","Action":["ec2:CreateTags","ec2:TerminateInstances"],"Resource":"arn:aws:ec2:$REGION:$ACCOUNT:instance/*","Condition":{"StringEquals":{"ec2:ResourceTag/ray-cluster-name":"w2s-ray"}}},
 {"Sid":"PassWorkerRole","Effect":"Allow","Action":"iam:PassRole","Resource":"arn:aws:iam::$ACCOUNT:role/$WORKER_ROLE","Condition":{"StringEquals":{"iam:PassedToService":"ec2.amazonaws.com"}}}
]}
JSON
)"
# an older version of this script attached AmazonEC2FullAccess; take it away again
aws iam detach-role-policy --role-name "$HEAD_ROLE" \
  --policy-arn arn:aws:iam::aws:policy/AmazonEC2FullAccess >/dev/null 2>&1 || true
aws iam delete-role-policy --role-name "$HEAD_ROLE" --policy-name w2s-pass-worker-role >/dev/null 2>&1 || true
aws iam put-role-policy --role-name "$HEAD_ROLE" --policy-name w2s-ray-autoscaler \
  --policy-document "$AUTOSCALER_POLICY"

echo "done: envsubst '\$W2S_SSH_CIDR' < clusters/aws.yaml > /tmp/w2s-aws.yaml && ray up /tmp/w2s-aws.yaml"
