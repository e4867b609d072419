#!/bin/bash
# SPDX-License-Identifier: MIT
# `trainsupd validate`: the CLI side of config validation (INTERFACE.md "Config file"): exit
# codes, problem lines with field paths, syntax error positions, --show with defaults, and
# which file is read (TRAINSUPD_CONFIG, --config).
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"

plan 26

STATE=$TRAINSUPD_STATE_DIR
GOOD=$T/good.json
write_config "$GOOD"

# ---- a good config
run_cmd "$TRAINSUPD" validate --config "$GOOD"
is "$RC" 0 "a good config: exit 0"

run_cmd "$TRAINSUPD" validate --config "$GOOD" --show
printf '%s\n' "$OUT" >"$T/show.json"
if [ "$RC" -eq 0 ] && is_json "$T/show.json"; then ok "validate --show: exit 0 and one JSON document"; else
        not_ok "validate --show: exit 0 and one JSON document"; diag "rc=$RC" "stdout: $OUT" "stderr: $ERR"; fi
is "$(json_get "$T/show.json" 'd["checkpoint"]["settle_ms"]')" 2000 "--show: checkpoint.settle_ms defaults to 2000"
is "$(json_get "$T/show.json" 'd["storage"]["url"]')" "\"file://$STATE/store\"" \
        "--show: storage.url defaults to file://<state dir>/store"
is "$(json_get "$T/show.json" '[d["tasks"][0]["name"], d["tasks"][0]["checkpoint_dir"]]')" \
        "[\"main\", \"$STATE/checkpoints/main\"]" "--show: task name main, checkpoint_dir under the state dir"
is "$(json_get "$T/show.json" '[d["checkpoint"][k] for k in ("signal", "timeout_s", "exclude")]')" \
        '["SIGUSR1", 60, []]' "--show: checkpoint.signal, timeout_s, exclude defaults"
is "$(json_get "$T/show.json" '[d["storage"]["keep"], d["storage"]["concurrency"], d["cloud"]["provider"], d["cloud"]["poll_ms"], d["cloud"]["acknowledge"], d["on_complete"], d["on_failure"]]')" \
        '[3, 8, "auto", 1000, true, "poweroff", "none"]' "--show: storage, cloud and on_* defaults"
is "$(json_get "$T/show.json" '[d["tasks"][0][k] for k in ("runtime", "command", "stop_grace_s", "success_exit_codes", "restart")]')" \
        '["exec", ["/bin/true"], 30, [0], {"max": 3, "backoff_s": 10, "backoff_max_s": 300}]' \
        "--show: task runtime, command, stop_grace_s, success_exit_codes, restart defaults"
run_cmd "$TRAINSUPD" validate --config "$T/show.json"
if [ "$RC" -eq 0 ]; then ok "the --show output is itself a valid config"; else
        not_ok "the --show output is itself a valid config"; diag "stderr: $ERR"; fi

# ---- two problems: both reported, with their field paths, one line each
CFG_TASKS='[{"runtime": "docker"}]' write_config "$T/two.json" '"tpyo": 1'
run_cmd "$TRAINSUPD" validate --config "$T/two.json" --show
is "$RC" 78 "two problems: exit 78"
like "$ERR" "(^|$NL)tpyo: unknown key($NL|\$)" "the unknown key is reported as 'tpyo: unknown key'"
like "$ERR" "(^|$NL)tasks\[0\]\.image: [^$NL]+" "the missing image is reported on tasks[0].image"
is "$(printf '%s\n' "$ERR" | grep -c .)" 2 "exactly one line per problem"
is "$OUT" "" "--show prints nothing for an invalid config"

# ---- required keys and a value rule
printf '{}\n' >"$T/empty.json"
run_cmd "$TRAINSUPD" validate --config "$T/empty.json"
like "$RC:$ERR" "^78:(.*$NL)?job_id: .*${NL}tasks: |^78:(.*$NL)?tasks: .*${NL}job_id: " \
        "an empty object: exit 78, job_id and tasks both reported"
CFG_JOB_ID='bad id!' write_config "$T/badid.json"
run_cmd "$TRAINSUPD" validate --config "$T/badid.json"
like "$RC:$ERR" "^78:(.*$NL)?job_id: " "a job_id outside [A-Za-z0-9._-]: exit 78, reported on job_id"

# ---- a JSON syntax error: FILE:LINE:COLUMN
SYN=$T/syntax.json
printf '{\n  "job_id": "x",\n  "tasks": @\n}\n' >"$SYN"
run_cmd "$TRAINSUPD" validate --config "$SYN"
is "$RC" 78 "a syntax error: exit 78"
like "$ERR" "(^|$NL)$SYN:3:12: syntax error: " "the syntax error line is FILE:LINE:COLUMN: syntax error: (line 3, column 12)"

# ---- a missing file
MISSING=$T/does-not-exist.json
run_cmd "$TRAINSUPD" validate --config "$MISSING"
like "$RC:$ERR" "^78:.*$MISSING" "a missing file: exit 78, the path named"

# ---- which file: TRAINSUPD_CONFIG, and --config wins over it
run_cmd env TRAINSUPD_CONFIG="$GOOD" "$TRAINSUPD" validate
is "$RC" 0 "TRAINSUPD_CONFIG names the config (good file: exit 0)"
run_cmd env TRAINSUPD_CONFIG="$T/two.json" "$TRAINSUPD" validate
like "$RC:$ERR" "^78:(.*$NL)?tpyo: unknown key" "TRAINSUPD_CONFIG names the config (bad file: its problems)"
run_cmd env TRAINSUPD_CONFIG="$T/two.json" "$TRAINSUPD" validate --config "$GOOD"
is "$RC" 0 "--config wins over TRAINSUPD_CONFIG (good --config, bad env)"
run_cmd env TRAINSUPD_CONFIG="$GOOD" "$TRAINSUPD" validate --config "$MISSING"
like "$RC:$ERR" "^78:.*$MISSING" "--config wins over TRAINSUPD_CONFIG (missing --config, good env)"

# ---- usage
run_cmd "$TRAINSUPD" validate --config "$GOOD" --bogus
is "$RC" 64 "validate with an unknown option: exit 64"
run_cmd "$TRAINSUPD" validate --config "$GOOD" --json
is "$RC" 64 "validate with another verb's option (--json): exit 64"

is "$(sanitizer_report "$T/all-cmd.err")" "" "no sanitizer findings"
