#!/usr/bin/python3
"""vm-checks.py - check-vm's assertions on one boot's evidence (journal as `journalctl -o json`
lines, status.jsonl captures from e2e-watch, the serial log, the file:// store).

  vm-checks.py --boot N --journal J [--cloud aws|gce|azure] [--seed imds|nocloud]
               [--fakecloud-log LOG] [--cloud-init-result JSON] [--status S] [--serial LOG]
               [--store DIR] [--saved-step N] [--killed] [--restart RESTART_JSON] [--steps N]

Boots 1-3: one job's life (notice + hard kill, resume + complete, marker found). Boot 4: the
ACPI power button (logind's shutdown, the daemon's last-chance round). Boot 5: `systemctl restart
trainsupd` during the run (RESTART_JSON: what e2e-watch saw before and after the restart).
CLOUD: whose VM the SMBIOS strings made it (provider "auto" must find it); SEED: where cloud-init
got the user data (imds: its Ec2 datasource from the fake cloud, whose request log for this boot
is LOG; nocloud: the seed disk).

Prints one "PASS: ..." / "FAIL: ..." line per check and, for boot 1, "SAVED_STEP=N" (the step
of the newest committed snapshot, which boot 2 must resume from). Exit status 1 when any check
failed.
"""
import argparse
import json
import os
import re
import sys

JOB, TASK = "e2e-vm-job", "trainer"
TASK_UNIT = "trainsupd-%s-%s.service" % (JOB, TASK)
UNIT_STARTED_ID = "39f53479d3a045ac8e11786248231fbf"  # systemd: a unit finished starting
NOTICE_KINDS = {"aws": "spot-interruption", "gce": "preempt", "azure": "preempt"}

results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print("%s: %s%s" % ("PASS" if ok else "FAIL", name, (" (%s)" % detail) if detail else ""))


def text(v):
    if isinstance(v, list):  # journalctl -o json gives non-UTF-8 fields as byte arrays
        return bytes(v).decode("utf-8", "replace")
    return v if isinstance(v, str) else ("" if v is None else str(v))


def load_journal(path):
    recs = []
    if not os.path.exists(path):
        return recs
    with open(path, "rb") as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a line cut short by the hard kill
            if isinstance(r, dict):
                recs.append({k: text(v) for k, v in r.items()})
    recs.sort(key=lambda r: int(r.get("__REALTIME_TIMESTAMP", "0") or 0))
    return recs


def events(recs, name=None):
    return [r for r in recs if r.get("SYSLOG_IDENTIFIER") == "trainsupd" and r.get("TRAINSUPD_EVENT")
            and (name is None or r["TRAINSUPD_EVENT"] == name)]


def task_records(recs):
    return [r for r in recs
            if r.get("_SYSTEMD_UNIT") == TASK_UNIT or r.get("TRAINSUPD_TASK") == TASK
            or r.get("SYSLOG_IDENTIFIER") == "demo-train"]


def task_lines(recs):
    return [r.get("MESSAGE", "") for r in task_records(recs)]


def task_checkpoints(recs):
    """(timestamp, step) of each "checkpoint at step N" line of the task."""
    return [(ts(r), int(m.group(1))) for r in task_records(recs)
            for m in [re.match(r"checkpoint at step (\d+)", r.get("MESSAGE", ""))] if m]


def ts(r):
    return int(r.get("__REALTIME_TIMESTAMP", "0") or 0)


def load_status(path):
    out = []
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def unit_started(recs):
    return [r for r in recs if r.get("MESSAGE_ID") == UNIT_STARTED_ID and r.get("UNIT") == "trainsupd.service"
            and r.get("JOB_RESULT") == "done"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--boot", type=int, required=True)
    ap.add_argument("--journal", required=True)
    ap.add_argument("--status")
    ap.add_argument("--serial")
    ap.add_argument("--store")
    ap.add_argument("--saved-step", type=int)
    ap.add_argument("--killed", action="store_true")
    ap.add_argument("--restart")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--cloud", default="aws", choices=("aws", "gce", "azure"))
    ap.add_argument("--seed", default="nocloud", choices=("imds", "nocloud"))
    ap.add_argument("--fakecloud-log")
    ap.add_argument("--cloud-init-result")
    a = ap.parse_args()

    recs = load_journal(a.journal)
    st = load_status(a.status)
    serial = open(a.serial, "rb").read().decode("utf-8", "replace") if a.serial and os.path.exists(a.serial) else ""
    tl = task_lines(recs)
    ev = events(recs)
    names = [r["TRAINSUPD_EVENT"] for r in ev]
    check("journal has records", len(recs) > 100, "%d records, %d trainsupd events" % (len(recs), len(ev)))
    started = events(recs, "started")
    if a.boot == 5:
        check("trainsupd started twice (boot, then the restart)", len(started) == 2, "%d started events" % len(started))
    else:
        check("trainsupd started once", len(started) == 1, "%d started events" % len(started))
    check("Type=notify unit reached active (systemd: trainsupd.service started, JOB_RESULT=done)",
          unit_started(recs))
    detected = [s["status"]["provider"] for s in st if isinstance(s.get("status"), dict)]
    # the system's shutdown (boot 4) is a notice without a provider: it does not come from the cloud
    prov = [r.get("TRAINSUPD_PROVIDER") for r in events(recs, "started") + events(recs, "notice")
            if r.get("TRAINSUPD_NOTICE_KIND") != "shutdown"] + detected
    check("provider auto resolved to %s from the SMBIOS/DMI strings" % a.cloud,
          prov and all(p == a.cloud for p in prov), ",".join(sorted(set(p or "?" for p in prov))))
    check_cloud_init(a, recs)
    if a.boot == 1:
        check("nothing restored on the first boot", "restore-done" not in names and "completion-found" not in names)
        check("the task started fresh (exec runtime, its own transient unit)",
              "task-started" in names and any(l.startswith("starting fresh") for l in tl),
              "task lines: %d" % len(tl))
        pre = [r for r in events(recs, "snapshot-committed")]
        notice = events(recs, "notice")
        check("a background snapshot was committed before the notice",
              pre and notice and ts(pre[0]) < ts(notice[0]))
        check("the notice was seen (%s %s, imminent)" % (a.cloud, NOTICE_KINDS[a.cloud]),
              notice and notice[0].get("TRAINSUPD_NOTICE_KIND") == NOTICE_KINDS[a.cloud]
              and notice[0].get("TRAINSUPD_IMMINENT") == "1",
              notice and notice[0].get("MESSAGE", ""))
        if notice:
            t0 = ts(notice[0])
            after = [r for r in ev if ts(r) >= t0]
            seq = [r["TRAINSUPD_EVENT"] for r in after]
            check("notice -> checkpoint-requested -> checkpoint-settled -> snapshot-committed -> task-exited",
                  in_order(seq, ["notice", "checkpoint-requested", "checkpoint-settled", "snapshot-committed",
                                 "task-exited"]), " ".join(seq[:12]))
            commits = [r for r in after if r["TRAINSUPD_EVENT"] == "snapshot-committed"]
            check_last_chance(a, recs, notice[0], commits, pre)
            dl = notice[0].get("TRAINSUPD_DEADLINE_USEC", "")
            if commits and dl.isdigit():
                margin = (int(dl) - ts(commits[0])) / 1e6
                check("snapshot committed before the deadline", margin > 0,
                      "%.1f s after the notice, %.1f s before the deadline" % ((ts(commits[0]) - t0) / 1e6, margin))
            else:
                check("snapshot committed before the deadline", False, "no commit or no DEADLINE_USEC")
        phases = [s["status"]["phase"] for s in st if isinstance(s.get("status"), dict)]
        check("status --json reached phase drained", "drained" in phases, "->".join(dedup(phases)))
        # boot 2 restores the newest committed snapshot: what it must resume from
        newest = snapshot_step(a.store, pre[-1].get("TRAINSUPD_SNAPSHOT", "")) if pre and a.store else None
        check("the newest committed snapshot is readable in the store", newest is not None,
              pre and "%s: step %s" % (pre[-1].get("TRAINSUPD_SNAPSHOT"), newest))
        if newest is not None:
            print("SAVED_STEP=%d" % newest)
        check("the guest was killed hard (no power-down on the serial console)",
              a.killed and "reboot: Power down" not in serial)
    elif a.boot == 2:
        check("the newest snapshot was restored", "restore-done" in names)
        resumed = [l for l in tl if l.startswith("resumed from step")]
        m = re.match(r"resumed from step (\d+)", resumed[0]) if resumed else None
        check("the task resumed from the step saved on the notice",
              m and a.saved_step is not None and int(m.group(1)) == a.saved_step,
              "%s; saved on boot 1: %s" % (resumed[0] if resumed else "no 'resumed from' line", a.saved_step))
        exits = events(recs, "task-exited")
        check("the task completed (printed done, exited 0)", "done" in tl and exits
              and exits[-1].get("TRAINSUPD_EXIT_CODE") == "0", exits and exits[-1].get("MESSAGE", ""))
        check("completed (final snapshot + completion marker)", "completed" in names)
        check("power-off requested through logind",
              "poweroff" in names and any("System is powering down" in r.get("MESSAGE", "") for r in recs))
    elif a.boot == 3:
        check("the completion marker was found", "completion-found" in names)
        check("the task was not started", "task-started" not in names and not tl, "%d task lines" % len(tl))
        check("power-off requested through logind",
              "poweroff" in names and any("System is powering down" in r.get("MESSAGE", "") for r in recs))
    elif a.boot == 4:
        check_power_button(a, recs, ev, names, tl)
    elif a.boot == 5:
        check_restart(a, recs, ev, names, tl, st)
    if a.boot in (2, 3, 4, 5):
        check("qemu exited by itself after the guest powered off ('reboot: Power down')",
              not a.killed and "reboot: Power down" in serial)
    if a.store and a.boot in (2, 3, 5):
        check("completion marker in the store", os.path.exists(os.path.join(a.store, JOB, "COMPLETED.json")))
    if a.store and a.boot == 4:
        check("no completion marker in the store (the job was interrupted)",
              not os.path.exists(os.path.join(a.store, JOB, "COMPLETED.json")))
    return 0 if all(results) else 1


def fakecloud_requests(path):
    """(method, path, status) of each metadata request in the fake cloud's log for this boot."""
    out = []
    if path and os.path.exists(path):
        with open(path, errors="replace") as f:
            for line in f:
                m = re.match(r"\S+ \S+ (GET|PUT|HEAD|POST) (\S+) -> (\d+|-) (\w+)", line)
                if m:
                    out.append((m.group(1), m.group(2), m.group(3), m.group(4)))
    return out


def check_cloud_init(a, recs):
    """cloud-init found the expected datasource and ran the user data (write_files, runcmd)."""
    want = "DataSourceEc2" if a.seed == "imds" else "DataSourceNoCloud"
    ci = [r.get("MESSAGE", "") for r in recs if r.get("SYSLOG_IDENTIFIER") == "cloud-init"]
    ci_done = [m for m in ci if "finished at" in m]
    ci_bad = [m for m in ci if "Failed to run module" in m or "failed" in m.lower() and "scripts" in m]
    try:
        res = json.load(open(a.cloud_init_result))["v1"]
    except (OSError, ValueError, TypeError, KeyError):
        res = None
    # boot 1 is killed, boots 3 and 4 may power off before cloud-final ends: the record may be missing
    if ci_done or res or a.boot in (2, 5):
        ds = (res or {}).get("datasource") or (ci_done[-1] if ci_done else "")
        check("cloud-init used %s and ran the user data to the end without errors" % want,
              want in ds and not ci_bad and not (res or {}).get("errors"),
              (ci_bad or [ds or "no result"])[0][:160])
    invalid = [m for m in ci if "Invalid cloud-config provided" in m]
    check("cloud-init found the image's and the user's cloud-config valid (its schema)", not invalid,
          (invalid or ["-"])[0][:160])
    if a.seed != "imds":
        return
    reqs = fakecloud_requests(a.fakecloud_log)
    aws = [r for r in reqs if r[3] == "aws"]
    tok = [i for i, r in enumerate(aws) if r[0] == "PUT" and r[1] == "/latest/api/token" and r[2] == "200"]
    ud = [i for i, r in enumerate(aws) if r[0] == "GET" and re.match(r"/(latest|\d{4}-\d\d-\d\d)/user-data$", r[1])]
    doc = [r for r in aws if r[0] == "GET" and r[1].endswith("/dynamic/instance-identity/document") and r[2] == "200"]
    check("cloud-init's Ec2 datasource got an IMDSv2 token, then the user data with it (200)",
          tok and ud and tok[0] < ud[0] and all(aws[i][2] == "200" for i in ud),
          "; ".join("%s %s -> %s" % r[:3] for r in [aws[i] for i in ud][:2]) or "%d aws requests" % len(aws))
    check("cloud-init read the instance identity document", doc, "%d reads" % len(doc))


def in_order(seq, want):
    pos = 0
    for w in want:
        try:
            pos = seq.index(w, pos) + 1
        except ValueError:
            return False
    return True


def snapshot_step(store, snap_id):
    """The step in state.json of snapshot SNAP_ID in the file:// store (None when unreadable)."""
    try:
        with open(os.path.join(store, JOB, TASK, "manifests", snap_id + ".json")) as f:
            man = json.load(f)
        ent = [e for e in man["files"] if e["path"] == "state.json"][0]
        with open(os.path.join(store, JOB, TASK, ent["object"])) as f:
            return json.load(f)["step"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def check_last_chance(a, recs, notice, commits, pre):
    """The notice's snapshot holds the checkpoint the task made for it (or a newer one).

    The task keeps training until it is stopped, so it may save again (its own periodic
    checkpoint) after the daemon's snapshot is committed: the snapshot must hold a checkpoint the
    task printed, no older than the first one it printed after the notice (the one it was
    asked for), and newer than the first background snapshot. Returns that step."""
    saved = task_checkpoints(recs)
    asked = [step for t, step in saved if t >= ts(notice)]
    got = snapshot_step(a.store, commits[0].get("TRAINSUPD_SNAPSHOT", "")) if commits and a.store else None
    bg = snapshot_step(a.store, pre[0].get("TRAINSUPD_SNAPSHOT", "")) if pre and a.store else None
    check("the committed snapshot holds the checkpoint the task made after the notice",
          got is not None and asked and got in [step for _, step in saved] and got >= asked[0]
          and bg is not None and got > bg,
          "snapshot %s: step %s (first background one: %s); the task printed checkpoints at %s, %s after the notice"
          % (commits and commits[0].get("TRAINSUPD_SNAPSHOT"), got, bg, [step for _, step in saved], asked))
    return got


def check_power_button(a, recs, ev, names, tl):
    """Boot 4: system_powerdown (ACPI power button) -> logind poweroff -> PrepareForShutdown."""
    check("the task started fresh, once", names.count("task-started") == 1
          and sum(1 for l in tl if l.startswith("starting fresh")) == 1)
    key = [r for r in recs if r.get("SYSLOG_IDENTIFIER") == "systemd-logind"
           and "Power key pressed" in r.get("MESSAGE", "")]
    watch = [r for r in recs if r.get("SYSLOG_IDENTIFIER") == "systemd-logind"
             and re.match(r"Watching system buttons on \S+ \(Power Button\)", r.get("MESSAGE", ""))]
    check("logind watched the ACPI power button (the button and evdev modules are in the image)", watch,
          watch and watch[0].get("MESSAGE", ""))
    check("logind saw the power key ('Power key pressed')", key, key and key[0].get("MESSAGE", ""))
    pre = events(recs, "snapshot-committed")
    notice = events(recs, "notice")
    check("a background snapshot was committed before the power button", pre and key and ts(pre[0]) < ts(key[0]))
    check("the notice is the system's shutdown (NOTICE_KIND=shutdown, after the key)",
          len(notice) == 1 and notice[0].get("TRAINSUPD_NOTICE_KIND") == "shutdown"
          and key and ts(notice[0]) >= ts(key[0]),
          "; ".join("%s %s" % (r.get("TRAINSUPD_NOTICE_KIND"), r.get("MESSAGE", "")) for r in notice))
    if not notice:
        check("shutdown -> checkpoint-requested -> checkpoint-settled -> snapshot-committed -> task-exited", False)
        return
    t0 = ts(notice[0])
    after = [r for r in ev if ts(r) >= t0]
    seq = [r["TRAINSUPD_EVENT"] for r in after]
    check("shutdown -> checkpoint-requested -> checkpoint-settled -> snapshot-committed -> task-exited",
          in_order(seq, ["notice", "checkpoint-requested", "checkpoint-settled", "snapshot-committed",
                         "task-exited"]), " ".join(seq[:12]))
    commits = [r for r in after if r["TRAINSUPD_EVENT"] == "snapshot-committed"]
    dl = notice[0].get("TRAINSUPD_DEADLINE_USEC", "")
    check("snapshot committed before the shutdown deadline",
          commits and dl.isdigit() and int(dl) > ts(commits[0]),
          commits and dl.isdigit() and "%.1f s after the notice, %.1f s before the deadline"
          % ((ts(commits[0]) - t0) / 1e6, (int(dl) - ts(commits[0])) / 1e6))
    # the daemon stopped the task; systemd's shutdown did not kill it before the commit
    stopping = [r for r in recs if r.get("UNIT") == TASK_UNIT and r.get("MESSAGE", "").startswith("Stopping")]
    check("the task's unit was stopped only after the commit (the inhibitor held the shutdown)",
          commits and all(ts(r) >= ts(commits[0]) for r in stopping),
          "%d 'Stopping' records" % len(stopping))
    check_last_chance(a, recs, notice[0], commits, pre)
    check("the task did not complete", "done" not in tl and "completed" not in names)


def check_restart(a, recs, ev, names, tl, st):
    """Boot 5: `systemctl restart trainsupd` mid-run: the task's transient unit is adopted."""
    try:
        rs = json.load(open(a.restart))
    except (OSError, ValueError, TypeError):
        rs = None
    check("the guest ran systemctl restart trainsupd.service (exit 0)", rs and rs.get("rc") == 0, rs and rs.get("rc"))
    b, f = (rs or {}).get("before", {}), (rs or {}).get("after", {})
    check("the daemon was really restarted (a new main PID)",
          b.get("daemon_pid", "0") not in ("", "0") and f.get("daemon_pid", "0") not in ("", "0")
          and b.get("daemon_pid") != f.get("daemon_pid"), "%s -> %s" % (b.get("daemon_pid"), f.get("daemon_pid")))
    check("the task kept running through the restart (same PID, same unit invocation, active)",
          b.get("task_pid", "0") not in ("", "0") and b.get("task_pid") == f.get("task_pid")
          and b.get("task_invocation") and b.get("task_invocation") == f.get("task_invocation")
          and b.get("task_state") == f.get("task_state") == "active",
          "pid %s -> %s, invocation %s -> %s" % (b.get("task_pid"), f.get("task_pid"),
                                                 (b.get("task_invocation") or "-")[:8], (f.get("task_invocation") or "-")[:8]))
    pids = sorted(set(s.get("task_pid") for s in st if s.get("task_pid") not in (None, "", "0")))
    check("every status capture saw one task PID", len(pids) == 1, ",".join(pids))
    ts_ = events(recs, "task-started")
    fresh = [r for r in ts_ if r.get("TRAINSUPD_ADOPTED") != "1"]
    adopted = [r for r in ts_ if r.get("TRAINSUPD_ADOPTED") == "1"]
    started = events(recs, "started")
    check("started once, adopted once by the second daemon (no second task-started)",
          len(fresh) == 1 and len(adopted) == 1 and len(started) == 2 and ts(adopted[0]) > ts(started[1]),
          "; ".join(r.get("MESSAGE", "") for r in ts_))
    check("the adopted task is the same process",
          adopted and adopted[0].get("TRAINSUPD_PID") == b.get("task_pid") == fresh[0].get("TRAINSUPD_PID"),
          adopted and "PID %s (first %s)" % (adopted[0].get("TRAINSUPD_PID"), fresh and fresh[0].get("TRAINSUPD_PID")))
    check("nothing restored, the program started once",
          "restore-done" not in names and sum(1 for l in tl if l.startswith("starting fresh")) == 1
          and not any(l.startswith("resumed from") for l in tl))
    steps = [int(m.group(1)) for l in tl for m in [re.match(r"step (\d+)$", l)] if m]
    want = list(range(1, (a.steps or 0) + 1))
    check("every step ran exactly once, in order", a.steps and steps == want,
          "%d step lines, %s..%s" % (len(steps), steps[:1], steps[-1:]))
    exits = events(recs, "task-exited")
    check("the task completed (printed done, exited 0, one exit)", "done" in tl and len(exits) == 1
          and exits[0].get("TRAINSUPD_EXIT_CODE") == "0", "; ".join(r.get("MESSAGE", "") for r in exits))
    check("completed (final snapshot + completion marker)", "completed" in names)
    check("power-off requested through logind",
          "poweroff" in names and any("System is powering down" in r.get("MESSAGE", "") for r in recs))


def dedup(seq):
    out = []
    for x in seq:
        if not out or out[-1] != x:
            out.append(x)
    return out


if __name__ == "__main__":
    sys.exit(main())
