#!/bin/bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2016,SC2119,SC2120 # the task scripts expand in the container's shell; helpers with optional arguments
# runtime "docker" end to end: the real daemon against a real (private, rootful) Podman API service
# (podman-lib.sh): the checkpoint directory bind-mounted at mount_at (the container writes, the
# host sees it), the environment seen from inside, image default command, workdir, user; output as
# TASK=... OUT="..." lines; exit codes against success_exit_codes and the restart policy (restart,
# then failed, exit code in status); the checkpoint signal through `trainsupd checkpoint`;
# `trainsupd stop` (TERM reaches the task; a TERM-ignoring one is KILLed after stop_grace_s; the
# daemon stays up); the labels on the container; re-attach: after kill -9 of the daemon the
# container keeps running and the next daemon adopts the same container (ADOPTED=1), again after
# SIGTERM, and a container that ended while no daemon ran is accounted and removed; every exited
# container is removed. Then, through docker-record-proxy.py, the create request itself:
# HostConfig.DeviceRequests for gpus "all", a count and device ids (Podman drops them, so only the
# request can show them), NetworkMode, labels, the bind at a custom mount_at.
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
. "$TESTS_DIR/task-lib.sh"
. "$TESTS_DIR/podman-lib.sh"

plan 85

CK=$T/ck
mkdir -p "$CK"
IMG="\"image\": \"$TEST_IMAGE\""
NET='"network": "none"'
NO_RESTART='"restart": {"max": 0, "backoff_s": 1, "backoff_max_s": 1}'
RE_ID='[0-9a-f]{12,64}'
TRAPPING='trap "echo got USR1" USR1
trap "echo got TERM; exit 0" TERM
echo ready
while :; do sleep 1 & wait $!; done'
STUBBORN='trap "" TERM
echo ready
while :; do sleep 1; done'

# docker_task NAME SCRIPT [MEMBER...]: a docker task running /bin/sh -c SCRIPT in the test image,
# network none, its checkpoint directory under $CK/<job>-<name> ($JOB).
docker_task() {
        local name=$1 script=$2
        shift 2
        sh_task "$name" "$script" "$IMG" "$NET" "\"checkpoint_dir\": \"$CK/$JOB-$name\"" "$@"
}

# cid TASK [N]: the CONTAINER= of the task's N-th (default last) task-started record.
cid() {
        local l
        if [ -n "${2:-}" ]; then l=$(nth_ev task-started "$1" "$2"); else l=$(ev_lines task-started "$1" | tail -n 1); fi
        field "$l" CONTAINER
}

# same_id A B: one id is a prefix of the other (short and full ids), both non-empty.
same_id() { [ -n "$1" ] && [ -n "$2" ] && { [[ $1 == "$2"* ]] || [[ $2 == "$1"* ]]; }; }

# job_gone JOB [SECONDS]: until no container of JOB exists.
job_gone() { wait_for "${2:-10}" eval '[ "$(pm_job_count '"$1"')" = 0 ]'; }

# ================================================================ environment, mount, output, exit 0
JOB="d-basic"
task_config "$T/basic.json" $JOB \
        "$(docker_task main 'echo started
env | sort | sed "s/^/ENV /"
echo hello >"$TRAINSUPD_CHECKPOINT_DIR/from-container.txt"
echo "pwd=$(pwd)"' '"env": {"FOO": "bar baz", "TRAINSUPD_JOB_ID": "spoof"}' '"workdir": "/tmp"')" \
        "{\"name\": \"dflt\", $IMG, $NET, \"checkpoint_dir\": \"$CK/$JOB-dflt\"}" \
        "{\"name\": \"asuser\", $IMG, $NET, \"command\": [\"id\", \"-u\"], \"user\": \"65534:65534\", \"checkpoint_dir\": \"$CK/$JOB-asuser\"}"
start_daemon_ready "$T/basic.json"

wait_ev task-exited main 1 20
l=$(nth_ev task-started main 1)
like "$l" "^$RE_TIME EVENT=task-started .*TASK=main .*RUNTIME=docker .*CONTAINER=$RE_ID( |\$)" \
        "task-started TASK=main RUNTIME=docker CONTAINER=<id>"
unlike "$l" "ADOPTED=" "a fresh start is not ADOPTED"
is "$(out_lines main | head -n 1)" started "the container's first output line: TASK=main OUT=\"started\""
env_of() { out_lines main | sed -n "s/^ENV $1=//p"; }
is "$(env_of TRAINSUPD_CHECKPOINT_DIR)" /checkpoints "env inside: TRAINSUPD_CHECKPOINT_DIR=/checkpoints (mount_at default)"
is "$(env_of TRAINSUPD_JOB_ID)" $JOB "env inside: TRAINSUPD_JOB_ID is the job id (the config's env cannot override it)"
is "$(env_of TRAINSUPD_TASK)" main "env inside: TRAINSUPD_TASK"
is "$(env_of TRAINSUPD_RESUMED)" 0 "env inside: TRAINSUPD_RESUMED=0"
is "$(env_of TRAINSUPD_CHECKPOINT_SIGNAL)" SIGUSR1 "env inside: TRAINSUPD_CHECKPOINT_SIGNAL=SIGUSR1"
is "$(env_of TRAINSUPD_COMMIT_FILE)" /checkpoints/.trainsupd-commit "env inside: TRAINSUPD_COMMIT_FILE"
is "$(env_of FOO)" "bar baz" "env inside: the config's env (a value with a space)"
is "$(out_lines main | grep '^pwd=')" "pwd=/tmp" "workdir"
is "$(cat "$CK/$JOB-main/from-container.txt" 2>&1)" hello \
        "the checkpoint_dir is bind-mounted: the container's file is in the host directory"
like "$(nth_ev task-exited main 1)" " EXIT_CODE=0 .*DECISION=completed .*RESTARTS=0 " "task-exited EXIT_CODE=0 DECISION=completed RESTARTS=0"
wait_ev task-exited dflt 1 15
is "$(out_lines dflt)" "$TEST_IMAGE_CMD_OUT" "no command: the image's default command runs"
wait_ev task-exited asuser 1 15
is "$(out_lines asuser)" 65534 "user \"65534:65534\": the container runs as that uid"
wait_state main completed 5
is "$(tstat main '[t["state"], t["exit_code"], t["restarts"]]')" '["completed", 0, 0]' "status: completed, exit_code 0, restarts 0"
wait_for 20 eval '[ "$(tstat dflt "d[\"phase\"]")" = "\"completed\"" ]'
is "$(json_get "$T/status.json" 'd["phase"]')" '"completed"' "status: phase completed when every task completed"
if job_gone $JOB; then ok "the exited containers are removed"; else not_ok "the exited containers are removed"; diag "$(pm ps -a)"; fi
check "the daemon stays up after completion (on_complete none)" daemon_alive
term_daemon
is "$EXIT_CODE" 0 "SIGTERM: exit 0"

# ================================================================ exit codes, restart policy
JOB="d-policy"
task_config "$T/policy.json" $JOB \
        "$(docker_task fail 'echo attempt; exit 3' '"restart": {"max": 1, "backoff_s": 1, "backoff_max_s": 1}')" \
        "$(docker_task ok3 'exit 3' '"success_exit_codes": [0, 3]' "$NO_RESTART")" \
        "$(docker_task sig 'kill -KILL $$' "$NO_RESTART")"
start_daemon_ready "$T/policy.json"
wait_ev task-exited fail 2 20
like "$(nth_ev task-exited fail 1)" " EXIT_CODE=3 .*DECISION=restart .*RESTARTS=0 " "exit 3, restarts left: task-exited EXIT_CODE=3 DECISION=restart RESTARTS=0"
like "$(nth_ev task-restart fail 1)" " RESTARTS=1 .*DELAY_MS=1000( |\$)" "task-restart RESTARTS=1 DELAY_MS=1000"
gap=$(($(ts_ms "$(nth_ev task-started fail 2)") - $(ts_ms "$(nth_ev task-exited fail 1)")))
num_cmp "$gap" -ge 900 "the restart waits for the back-off (${gap} ms between exit and start)"
isnt "$(cid fail 2)" "$(cid fail 1)" "the restart runs a new container"
like "$(nth_ev task-exited fail 2)" " EXIT_CODE=3 .*DECISION=failed .*RESTARTS=1 " "no restarts left: DECISION=failed RESTARTS=1"
is "$(n_out fail '^attempt$')" 2 "the task ran twice"
wait_state fail failed 5
is "$(tstat fail '[t["state"], t["exit_code"], t["restarts"]]')" '["failed", 3, 1]' "status: failed, exit_code 3, restarts 1"
wait_ev task-exited ok3 1 10
like "$(nth_ev task-exited ok3 1)" " EXIT_CODE=3 .*DECISION=completed " "success_exit_codes [0, 3]: exit 3 completes"
is "$(tstat ok3 '[t["state"], t["exit_code"]]')" '["completed", 3]' "status: ok3 completed, exit_code 3"
wait_ev task-exited sig 1 10
like "$(nth_ev task-exited sig 1)" " (EXIT_CODE=137|EXIT_SIGNAL=SIGKILL) .*DECISION=failed " \
        "death by SIGKILL: EXIT_CODE=137 (Docker's 128+N) or EXIT_SIGNAL=SIGKILL, DECISION=failed"
like "$(tstat sig '[t["state"], t["exit_code"], t.get("exit_signal")]')" '^\["failed", (137, (null|"SIGKILL")|null, "SIGKILL")\]$' \
        "status: sig failed with exit_code 137 or exit_signal SIGKILL"
wait_for 20 eval '[ "$(tstat sig "d[\"phase\"]")" = "\"failed\"" ]'
is "$(json_get "$T/status.json" 'd["phase"]')" '"failed"' "status: phase failed"
if job_gone $JOB; then ok "every exited container is removed (4 ran)"; else not_ok "every exited container is removed"; diag "$(pm ps -a)"; fi
check "the daemon stays up after failures" daemon_alive
term_daemon
is "$EXIT_CODE" 0 "SIGTERM: exit 0"

# ================================================================ labels, checkpoint signal, trainsupd stop
JOB="d-stop"
task_config "$T/stop.json" $JOB "$(docker_task main "$TRAPPING")" "$(docker_task stubborn "$STUBBORN" '"stop_grace_s": 2')"
start_daemon_ready "$T/stop.json"
wait_out main '^ready$' 15 && wait_out stubborn '^ready$' 10
id=$(cid main)
is "$(pm_state "$id")" running "the container runs (podman inspect)"
is "$(pm inspect --format '{{index .Config.Labels "trainsupd.job"}} {{index .Config.Labels "trainsupd.task"}}' "$id")" "$JOB main" \
        "labels on the container: trainsupd.job=$JOB trainsupd.task=main"
is "$(pm_job_count $JOB)" 2 "podman ps --filter label=trainsupd.job=$JOB: one container per task"
st=$(tstat main '[t["state"], t["container"]]')
if [[ $st =~ ^\[\"running\",\ \"([0-9a-f]+)\"\]$ ]] && same_id "${BASH_REMATCH[1]}" "$id"; then
        ok "status: running, container is the container's id"
else
        not_ok "status: running, container is the container's id"; diag "status: $st, task-started: $id"
fi
run_cmd "$TRAINSUPD" checkpoint --task main
if [ "$RC" -eq 69 ]; then
        skip "trainsupd checkpoint --task main: exit 0" "checkpoint not available: $ERR"
        skip "USR1 reached the task in the container" "checkpoint not available"
else
        is "$RC" 0 "trainsupd checkpoint --task main: exit 0"
        if wait_out main '^got USR1$' 5; then ok "USR1 reached the task in the container (its trap ran)"; else
                not_ok "USR1 reached the task in the container"; diag "$(log_tail)"; fi
fi
is "$(n_out stubborn USR1)" 0 "checkpoint --task main signals only that task"
t0=$(now_ms)
run_cmd "$TRAINSUPD" stop
is "$RC" 0 "trainsupd stop: exit 0"
wait_ev task-exited main 1 10
if wait_out main '^got TERM$' 5; then ok "stop: TERM reached the task (its trap ran)"; else not_ok "stop: TERM reached the task"; diag "$(log_tail)"; fi
like "$(nth_ev task-exited main 1)" " EXIT_CODE=0 .*DECISION=stopped " "stop: task-exited EXIT_CODE=0 DECISION=stopped"
wait_ev task-exited stubborn 1 15
l=$(nth_ev task-exited stubborn 1)
like "$l" " (EXIT_CODE=137|EXIT_SIGNAL=SIGKILL) .*DECISION=stopped " "a TERM-ignoring task is KILLed: EXIT_CODE=137 DECISION=stopped"
dt=$(($(ts_ms "$l") - t0))
if [ "$dt" -ge 1800 ] && [ "$dt" -le 7000 ]; then ok "... after stop_grace_s (2 s): ${dt} ms"; else
        not_ok "... after stop_grace_s (2 s)"; diag "task-exited came ${dt} ms after stop"; fi
wait_state main exited 5
is "$(tstat main '[t["state"], t["exit_code"]]')" '["exited", 0]' "status: main exited, exit_code 0"
like "$(tstat stubborn '[t["state"], t["exit_code"], t.get("exit_signal")]')" '^\["exited", (137, (null|"SIGKILL")|null, "SIGKILL")\]$' \
        "status: stubborn exited (137 / SIGKILL)"
if job_gone $JOB; then ok "stop: the containers are removed"; else not_ok "stop: the containers are removed"; diag "$(pm ps -a)"; fi
is "$(n_ev task-restart)" 0 "no restart after a stop"
check "the daemon stays up after trainsupd stop" daemon_alive
term_daemon
is "$EXIT_CODE" 0 "SIGTERM: exit 0"

# ================================================================ re-attach
JOB="d-adopt"
task_config "$T/adopt.json" $JOB "$(docker_task main 'echo ready
i=0
while [ ! -e "$TRAINSUPD_CHECKPOINT_DIR/quit" ]; do i=$((i + 1)); echo "tick $i"; sleep 0.3; done
echo bye')"
start_daemon_ready "$T/adopt.json"
wait_out main '^ready$' 15
id1=$(cid main)
kill9_daemon
sleep 1
is "$(pm_state "$id1")" running "kill -9 of the daemon: the container keeps running"
start_daemon_ready "$T/adopt.json"
wait_ev task-started main 1 10
l=$(nth_ev task-started main 1)
like "$l" " ADOPTED=1( |\$)" "the next daemon re-attaches: task-started ADOPTED=1"
if same_id "$(field "$l" CONTAINER)" "$id1"; then ok "... with the same container id"; else
        not_ok "... with the same container id"; diag "before: $id1" "adopted: $(field "$l" CONTAINER)"; fi
is "$(pm_job_count $JOB)" 1 "exactly one container of the job exists (podman ps -a --filter label=trainsupd.job=$JOB)"
is "$(tstat main 't["state"]')" '"running"' "status: running after adoption"
n=$(out_lines main | grep -c '^tick' || true)
if wait_out main '^tick' 5 $((n + 2)); then ok "the adopted container's output reaches the daemon"; else
        not_ok "the adopted container's output reaches the daemon"; diag "$(log_tail)"; fi
term_daemon
is "$EXIT_CODE" 0 "SIGTERM with a container running: exit 0"
num_cmp "$TERM_MS" -lt 3000 "... promptly (${TERM_MS} ms): the container is left running"
is "$(pm_state "$id1")" running "SIGTERM of the daemon: the container keeps running"
start_daemon_ready "$T/adopt.json"
wait_ev task-started main 1 10
l=$(nth_ev task-started main 1)
if [[ $l == *" ADOPTED=1"* ]] && same_id "$(field "$l" CONTAINER)" "$id1"; then ok "adopted again after SIGTERM (same container)"; else
        not_ok "adopted again after SIGTERM (same container)"; diag "$l"; fi
term_daemon
# The container ends while no daemon runs: the next one reads its exit and removes it.
touch "$CK/$JOB-main/quit"
wait_for 10 eval '[ "$(pm_state '"$id1"')" = exited ]'
is "$(pm_state "$id1")" exited "the container ended while no daemon ran"
start_daemon_ready "$T/adopt.json"
exited_like main 10 " EXIT_CODE=0 .*DECISION=completed " \
        "the next daemon accounts for that exit: EXIT_CODE=0 DECISION=completed"
is "$(n_ev task-started main)" 0 "... without starting it again"
if job_gone $JOB; then ok "... and removes the container"; else not_ok "... and removes the container"; diag "$(pm ps -a)"; fi
wait_state main completed 5
is "$(tstat main '[t["state"], t["exit_code"]]')" '["completed", 0]' "status: completed, exit_code 0"
term_daemon
# ... and a later daemon never runs the completed task again.
start_daemon_ready "$T/adopt.json"
sleep 1
is "$(n_ev task-started main)" 0 "a later daemon does not run the completed task again"
is "$(pm_job_count $JOB)" 0 "... and creates no container"
term_daemon

# ================================================================ the create request (recording proxy)
JOB="d-gpu"
proxy_start
SOCK_FOR_DAEMON=$PROXY_SOCK task_config "$T/gpu.json" $JOB \
        "{\"name\": \"g-all\", $IMG, $NET, \"command\": [\"true\"], \"gpus\": \"all\", \"mount_at\": \"/data/ckpt\", \"checkpoint_dir\": \"$CK/$JOB-all\"}" \
        "{\"name\": \"g-count\", $IMG, $NET, \"command\": [\"true\"], \"gpus\": 2, \"checkpoint_dir\": \"$CK/$JOB-count\"}" \
        "{\"name\": \"g-ids\", $IMG, $NET, \"command\": [\"true\"], \"gpus\": [\"0\", \"GPU-abc\"], \"checkpoint_dir\": \"$CK/$JOB-ids\"}" \
        "{\"name\": \"g-none\", $IMG, \"command\": [\"true\"], \"checkpoint_dir\": \"$CK/$JOB-none\"}"
start_daemon_ready "$T/gpu.json"
wait_for 20 eval '[ "$(tstat g-all "d[\"phase\"]")" = "\"completed\"" ]'
is "$(json_get "$T/status.json" 'd["phase"]')" '"completed"' "all four tasks completed through the proxy"
# create TASK EXPR: Python EXPR over c = the body of the task's create request (by its label).
create() {
        proxy_requests "(lambda cs: (lambda c: $2)(cs[0]) if len(cs) == 1 else 'ERROR: %d creates' % len(cs))([x['body'] for x in r if x['method'] == 'POST' and '/containers/create' in x['path'] and ((x['body'] or {}).get('Labels') or {}).get('trainsupd.task') == '$1'])"
}
is "$(create g-all '[c["Labels"].get(k) for k in ("trainsupd.job", "trainsupd.task")]')" "[\"$JOB\", \"g-all\"]" "create: Labels trainsupd.job and trainsupd.task"
is "$(create g-all '[(d.get("Count"), d.get("DeviceIDs") or None, [["gpu"]] == d.get("Capabilities")) for d in c["HostConfig"].get("DeviceRequests") or []]')" \
        '[[-1, null, true]]' 'gpus "all": DeviceRequests [{Count: -1, Capabilities: [["gpu"]]}] (as docker run --gpus all)'
is "$(create g-count '[(d.get("Count"), d.get("DeviceIDs") or None, [["gpu"]] == d.get("Capabilities")) for d in c["HostConfig"].get("DeviceRequests") or []]')" \
        '[[2, null, true]]' 'gpus 2: DeviceRequests [{Count: 2, Capabilities: [["gpu"]]}]'
is "$(create g-ids '[(d.get("Count") or 0, d.get("DeviceIDs"), [["gpu"]] == d.get("Capabilities")) for d in c["HostConfig"].get("DeviceRequests") or []]')" \
        '[[0, ["0", "GPU-abc"], true]]' 'gpus ["0", "GPU-abc"]: DeviceRequests [{DeviceIDs: ["0", "GPU-abc"], Capabilities: [["gpu"]]}]'
is "$(create g-none 'c["HostConfig"].get("DeviceRequests") or []')" '[]' "no gpus: no DeviceRequests"
is "$(create g-all 'c["HostConfig"].get("NetworkMode")')" '"none"' 'network "none": HostConfig.NetworkMode "none"'
is "$(create g-none 'c["HostConfig"].get("NetworkMode")')" '"bridge"' "no network: HostConfig.NetworkMode \"bridge\" sent explicitly (Podman's own default may differ)"
is "$(create g-all '[e for e in c.get("Env") or [] if e.startswith("TRAINSUPD_CHECKPOINT_DIR=")]')" '["TRAINSUPD_CHECKPOINT_DIR=/data/ckpt"]' \
        "mount_at /data/ckpt: TRAINSUPD_CHECKPOINT_DIR=/data/ckpt"
is "$(create g-all '[b.split(":")[:2] for b in c["HostConfig"].get("Binds") or []] + [[m.get("Source"), m.get("Target")] for m in c["HostConfig"].get("Mounts") or [] if m.get("Type", "bind") == "bind"]')" \
        "[[\"$CK/$JOB-all\", \"/data/ckpt\"]]" "mount_at /data/ckpt: the checkpoint_dir is bound there (and nothing else)"
is "$(create g-all 'c.get("Cmd")')" '["true"]' "command is sent as the container's argv (Cmd)"
is "$(proxy_requests '[x["path"] for x in r if "/containers/create" in x["path"] and not x["path"].startswith("/v1.41/")]')" '[]' \
        "the API is spoken as v1.41 (/v1.41/ paths)"
if job_gone $JOB; then ok "gpus tasks: containers removed after their exit"; else not_ok "gpus tasks: containers removed"; diag "$(pm ps -a)"; fi
term_daemon
is "$EXIT_CODE" 0 "SIGTERM: exit 0"
proxy_stop

is "$(sanitizer_report "$T"/daemon-*.log "$T/all-cmd.err")" "" "no sanitizer findings"
