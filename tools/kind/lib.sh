# shellcheck shell=bash source-path=SCRIPTDIR disable=SC2034  # (its variables are for the scripts)
# What tools/kind/up.sh, demo.sh and down.sh share: names, the pinned versions (sourced
# from manifests/versions.env, the only file that writes a version down) and small helpers.
# Sourced, never run; it changes nothing by itself.

KIND_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MANIFESTS=$KIND_ROOT/manifests
# shellcheck source=../../manifests/versions.env
source "$MANIFESTS/versions.env"

CLUSTER=${VIDREC_KIND_CLUSTER:-vidrec}  # the kind cluster
NS=${VIDREC_NS:-vidrec}                 # vidrec's namespace
RELEASE=vidrec                          # its Helm release: objects are named vidrec-...
MONITORING_NS=monitoring                # kube-prometheus-stack (the chart's defaults say so)
KSERVE_NS=kserve
IMAGE_REPO=vidrec                       # manifests/kind-values.yaml: image.repository
DATA=/var/lib/vidrec/data               # the simulated log on the shared volume (the
                                        # retraining CronJob trains on it)
SIM_SCALE=small                         # 2,000 users, 600 videos, 14 days: trains in ~1 min
TRAFFIC_RATE=${TRAFFIC_RATE:-20}        # requests/s of `make kind-demo` (rollouts/ are sized for it)
TRAFFIC_SECONDS=1800

# A kubeconfig of its own: nothing here reads or changes ~/.kube/config or its context.
STATE=$KIND_ROOT/out/kind
export KUBECONFIG=${VIDREC_KUBECONFIG:-$STATE/kubeconfig}
VIDREC=${VIDREC_CLI:-$KIND_ROOT/.venv/bin/vidrec}      # the CLI on this machine (make install)
PYTHON=${VIDREC_PYTHON:-$KIND_ROOT/.venv/bin/python}

say() { printf '\n==> %s\n' "$*"; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# need TOOL HINT: fail at once, saying how to install TOOL, when it is not on PATH.
need() {
	command -v "$1" >/dev/null 2>&1 || die "$1 is not installed (or not on PATH): $2"
}

need_kubectl() { need kubectl "https://kubernetes.io/docs/tasks/tools/"; }
need_helm() { need helm "https://helm.sh/docs/intro/install/ (v3.8 or later: the charts are OCI)"; }
need_kind() {
	need kind "go install sigs.k8s.io/kind@$KIND_VERSION, or https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
	local have
	have=$(kind version 2>/dev/null | awk '{print $2}')
	if [[ $have != "$KIND_VERSION" ]]; then
		printf 'warning: kind %s found; the node image (%s) is the one kind %s publishes\n' \
			"${have:-?}" "$KIND_NODE_IMAGE" "$KIND_VERSION" >&2
	fi
}
need_docker() {
	need docker "https://docs.docker.com/engine/install/"
	docker info >/dev/null 2>&1 || die "the Docker engine is not running (docker info failed)"
}
need_vidrec() {
	[[ -x $VIDREC && -x $PYTHON ]] || die "$VIDREC not found: run make install first"
}

cluster_exists() { kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; }

k() { kubectl -n "$NS" "$@"; }

# job_from_cronjob NAME [ARGS_JSON [RESOURCES_JSON]]: a Job (JSON, on stdout) from the
# retraining CronJob's template, so it has the chart's image, volumes, settings and security
# context; only the container's arguments and resources may differ (JSON Patch "add" sets
# or replaces them). Not owned by the CronJob: its history limit would delete these Jobs
# (up.sh's marker among them), and a running one would hold back its schedule (Forbid).
job_from_cronjob() {
	local name=$1 args=${2:-} resources=${3:-}
	local patch='[{"op":"add","path":"/metadata/ownerReferences","value":[]}'
	if [[ -n $args ]]; then
		patch+=",{\"op\":\"add\",\"path\":\"/spec/template/spec/containers/0/args\",\"value\":$args}"
	fi
	if [[ -n $resources ]]; then
		patch+=",{\"op\":\"add\",\"path\":\"/spec/template/spec/containers/0/resources\",\"value\":$resources}"
	fi
	patch+="]"
	k create job "$name" --from="cronjob/$RELEASE-retrain" --dry-run=client -o json |
		kubectl patch --local -f - --type=json -p "$patch" -o json
}

# The Jobs the scripts run. Training is the CronJob's own command, unchanged.
train_job() { job_from_cronjob "$1"; }
simulate_job() {
	job_from_cronjob "$RELEASE-simulate" \
		"[\"simulate\",\"--scale\",\"$SIM_SCALE\",\"--seed\",\"0\",\"--out\",\"$DATA\",\"--json\"]"
}
materialize_job() {
	job_from_cronjob "$RELEASE-materialize" \
		"[\"features\",\"materialize\",\"--data\",\"$DATA\",\"--config\",\"/etc/vidrec/vidrec.json\",\"--json\"]"
}
traffic_job() { # the model server's Service: KServe names it <InferenceService>-predictor
	job_from_cronjob "$RELEASE-traffic" \
		"[\"traffic\",\"--url\",\"http://$RELEASE-predictor.$NS.svc\",\"--data\",\"$DATA\",\"--rate\",\"$TRAFFIC_RATE\",\"--duration\",\"$TRAFFIC_SECONDS\",\"--json\"]" \
		'{"requests":{"cpu":"250m","memory":"512Mi"}}'
}

# wait_job NAME TIMEOUT_S: until the Job completes; on failure or timeout, its last log lines
# and an error.
wait_job() {
	local name=$1 timeout=$2 waited=0 state
	while :; do
		state=$(k get job "$name" -o jsonpath='{range .status.conditions[*]}{.type}={.status} {end}')
		[[ $state == *"Complete=True"* ]] && return 0
		if [[ $state == *"Failed=True"* ]] || ((waited >= timeout)); then
			k logs "job/$name" --tail=20 >&2 || true
			[[ $state == *"Failed=True"* ]] || die "job $name did not finish in ${timeout} s (kubectl -n $NS describe job $name)"
			die "job $name failed; its last log lines are above (kubectl -n $NS logs job/$name)"
		fi
		sleep 5
		waited=$((waited + 5))
	done
}

# rollout_file NAME_OR_PATH: manifests/rollouts/NAME.yaml, or the path given.
rollout_file() {
	local f=$1 names
	[[ -f $f ]] || f=$MANIFESTS/rollouts/$1.yaml
	if [[ ! -f $f ]]; then
		names=("$MANIFESTS"/rollouts/*.yaml)
		names=("${names[@]##*/}")
		die "no ModelRollout $1: choose one of ${names[*]%.yaml}, or give a file"
	fi
	printf '%s\n' "$f"
}

# rollout_manifest FILE VERSION: the example ModelRollout with spec.version set to VERSION.
rollout_manifest() {
	local file=$1 version=$2
	[[ $version =~ ^[0-9]+$ ]] || die "'$version' is not a registry version number"
	[[ $(grep -c '^  version: ' "$file") == 1 ]] || die "$file: expected exactly one '  version:' line (spec.version)"
	sed "s/^  version: .*/  version: \"$version\"/" "$file"
}

# registered_version < JOB_LOG: the version a training run registered, from its --json
# summary line; fails, saying why, when it registered none (a gate failed).
registered_version() {
	"$PYTHON" -c '
import json, sys
for line in reversed(sys.stdin.read().splitlines()):
    try:
        summary = json.loads(line)
    except ValueError:
        continue
    if isinstance(summary, dict) and "registered" in summary:
        if not summary["registered"]:
            failed = [g["name"] for g in summary.get("gates", []) if not g.get("passed")]
            sys.exit(f"the training run registered nothing; failed gates: {failed}")
        print(summary["version"])
        sys.exit(0)
sys.exit("no --json summary line in the training log")
'
}
