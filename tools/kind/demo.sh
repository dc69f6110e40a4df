#!/usr/bin/env bash
# `make kind-demo`, on the cluster of `make kind-up`: simulated users send requests and
# feedback (a Job running `vidrec traffic`), the retraining CronJob trains a challenger, an
# example ModelRollout releases it, and the operator takes it to promotion or rolls it back
# by itself; this script follows it (`vidrec rollout status --kube`) until it ends.
#   ROLLOUT=demo-fast|shadow|canary|FILE  the example in manifests/rollouts (default demo-fast)
#   ROLLBACK=1                            roll back by hand as soon as the canary has begun
# Needs kubectl and the vidrec CLI of this checkout (make install).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_kubectl
need_vidrec
file=$(rollout_file "${ROLLOUT:-demo-fast}")
ref=$NS/$RELEASE # every example is ModelRollout `vidrec`: one release at a time

[[ -f $KUBECONFIG ]] || die "no $KUBECONFIG: run make kind-up first"
k get inferenceservice "$RELEASE" >/dev/null 2>&1 ||
	die "no InferenceService $NS/$RELEASE in the cluster of $KUBECONFIG: run make kind-up first"
k wait --for=condition=Ready "inferenceservice/$RELEASE" --timeout=5m >/dev/null
phase=$(k get modelrollout "$RELEASE" -o jsonpath='{.status.phase}' 2>/dev/null || true)
if [[ $phase == shadow || $phase == canary ]]; then
	die "ModelRollout $ref is still in $phase: let it end, or end it now with
  KUBECONFIG=$KUBECONFIG $VIDREC rollout abort --kube $ref"
fi

say "simulated users: $TRAFFIC_RATE requests/s with feedback for up to $((TRAFFIC_SECONDS / 60)) min (job $RELEASE-traffic)"
k delete job "$RELEASE-traffic" --ignore-not-found --wait
traffic_job | k create -f -

job=$RELEASE-train-$(date +%s)
say "training a challenger in the cluster (job $job: the retraining CronJob's command; ~2 min)"
train_job "$job" | k create -f -
wait_job "$job" 1800
version=$(k logs "job/$job" | registered_version) || die "job $job registered no model version"

say "releasing v$version: $(basename "$file") (ModelRollout $ref)"
rollout_manifest "$file" "$version" | k apply -f -
cat <<EOF
The operator takes it from here. By hand, meanwhile (another terminal):
  export KUBECONFIG=$KUBECONFIG
  $VIDREC rollout status --kube $ref
  $VIDREC rollout promote|rollback|pause|resume|abort --kube $ref
EOF

rolled_back_by_hand=0
last=""
deadline=$((SECONDS + 1800))
while :; do
	read -r at phase weight paused <<<"$(k get modelrollout "$RELEASE" \
		-o jsonpath='{.status.version} {.status.phase} {.status.weight} {.status.paused}')" || true
	if [[ ${at:-} == "$version" ]]; then # the operator has started this version's rollout
		if [[ "$phase $weight" != "$last" ]]; then
			printf '  %s  v%s %s, %s %% of users\n' "$(date +%T)" "$version" "$phase" "${weight:-0}"
			last="$phase $weight"
		fi
		case $phase in promoted | rolled_back | aborted) break ;; esac
		if [[ ${paused:-} == true ]]; then
			"$VIDREC" rollout status --kube "$ref" || true
			die "v$version is paused for a human (analyses inconclusive, or paused by hand): decide with
  KUBECONFIG=$KUBECONFIG $VIDREC rollout resume|promote|rollback --kube $ref"
		fi
		if [[ ${ROLLBACK:-0} == 1 && $phase == canary && $rolled_back_by_hand == 0 ]]; then
			say "ROLLBACK=1: rolling back by hand"
			"$VIDREC" rollout rollback --kube "$ref" --wait 60
			rolled_back_by_hand=1
		fi
	fi
	((SECONDS < deadline)) || die "the rollout of v$version has not ended in 30 min: $VIDREC rollout status --kube $ref"
	sleep 5
done

say "v$version: $phase"
"$VIDREC" rollout status --kube "$ref"
k describe modelrollout "$RELEASE" | sed -n '/^Events:/,$p'
cat <<EOF

The simulated users keep coming for up to $((TRAFFIC_SECONDS / 60)) min (watch them in Grafana; stop them
with: kubectl -n $NS delete job $RELEASE-traffic). Run make kind-demo again to train and
release the next version; during a release, roll it back by hand with
  KUBECONFIG=$KUBECONFIG $VIDREC rollout rollback --kube $ref
(or ROLLBACK=1 make kind-demo), and promote early with ... rollout promote --kube $ref.
EOF
