#!/usr/bin/python3
"""vm-checks.py - check-vm's assertions on one boot's evidence (journal as `journalctl -o json`
lines, status.jsonl captures from e2e-watch, the serial log, the file:// store).

  vm-checks.py --boot N --journal J [--status S] [--serial LOG] [--store DIR] [--saved-step N]
               [--killed]

Prints one "PASS: ..." / "FAIL: ..." line per check and, for boot 1, "SAVED_STEP=N" (the step
of the checkpoint committed on the notice). Exit status 1 when any check failed.
"""
import argparse
import json
import os
import re
import sys

JOB, TASK = "e2e-vm-job", "trainer"
TASK_UNIT = "trainsupd-%s-%s.service" % (JOB, TASK)
UNIT_STARTED_ID = "39f53479d3a045ac8e11786248231fbf"  # systemd: a unit finished starting

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


def task_lines(recs):
    return [r.get("MESSAGE", "") for r in recs
            if r.get("_SYSTEMD_UNIT") == TASK_UNIT or r.get("TRAINSUPD_TASK") == TASK
            or r.get("SYSLOG_IDENTIFIER") == "demo-train"]


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
    a = ap.parse_args()

    recs = load_journal(a.journal)
    st = load_status(a.status)
    serial = open(a.serial, "rb").read().decode("utf-8", "replace") if a.serial and os.path.exists(a.serial) else ""
    tl = task_lines(recs)
    ev = events(recs)
    names = [r["TRAINSUPD_EVENT"] for r in ev]
    check("journal has records", len(recs) > 100, "%d records, %d trainsupd events" % (len(recs), len(ev)))
    started = events(recs, "started")
    check("trainsupd started once", len(started) == 1, "%d started events" % len(started))
    check("Type=notify unit reached active (systemd: trainsupd.service started, JOB_RESULT=done)",
          unit_started(recs))
    detected = [s["status"]["provider"] for s in st if isinstance(s.get("status"), dict)]
    prov = [r.get("TRAINSUPD_PROVIDER") for r in events(recs, "started") + events(recs, "notice")] + detected
    check("provider auto resolved to aws from the SMBIOS/DMI strings", prov and all(p == "aws" for p in prov),
          ",".join(sorted(set(p or "?" for p in prov))))

    ci = [r.get("MESSAGE", "") for r in recs if r.get("SYSLOG_IDENTIFIER") == "cloud-init"]
    ci_done = [m for m in ci if "finished at" in m]
    ci_bad = [m for m in ci if "Failed to run module" in m or "failed" in m.lower() and "scripts" in m]
    if ci_done or a.boot == 2:  # boot 1 is killed and boot 3 powers off before cloud-final may end
        check("cloud-init ran the NoCloud seed to the end, runcmd without errors",
              ci_done and "DataSourceNoCloud" in ci_done[-1] and not ci_bad, (ci_bad or ci_done or ["-"])[0][:120])
    if a.boot == 1:
        check("nothing restored on the first boot", "restore-done" not in names and "completion-found" not in names)
        check("the task started fresh (exec runtime, its own transient unit)",
              "task-started" in names and any(l.startswith("starting fresh") for l in tl),
              "task lines: %d" % len(tl))
        pre = [r for r in events(recs, "snapshot-committed")]
        notice = events(recs, "notice")
        check("a background snapshot was committed before the notice",
              pre and notice and ts(pre[0]) < ts(notice[0]))
        check("the notice was seen (aws spot-interruption, imminent)",
              notice and notice[0].get("TRAINSUPD_NOTICE_KIND", "").startswith("spot")
              and notice[0].get("TRAINSUPD_IMMINENT") == "1",
              notice and notice[0].get("MESSAGE", ""))
        if notice:
            t0 = ts(notice[0])
            after = [r for r in ev if ts(r) >= t0]
            seq = [r["TRAINSUPD_EVENT"] for r in after]
            want = ["notice", "checkpoint-requested", "checkpoint-settled", "snapshot-committed", "task-exited"]
            pos, ok = 0, True
            for w in want:
                try:
                    pos = seq.index(w, pos) + 1
                except ValueError:
                    ok = False
                    break
            check("notice -> checkpoint-requested -> checkpoint-settled -> snapshot-committed -> task-exited",
                  ok, " ".join(seq[:12]))
            commits = [r for r in after if r["TRAINSUPD_EVENT"] == "snapshot-committed"]
            dl = notice[0].get("TRAINSUPD_DEADLINE_USEC", "")
            if commits and dl.isdigit():
                margin = (int(dl) - ts(commits[0])) / 1e6
                check("snapshot committed before the deadline", margin > 0,
                      "%.1f s after the notice, %.1f s before the deadline" % ((ts(commits[0]) - t0) / 1e6, margin))
            else:
                check("snapshot committed before the deadline", False, "no commit or no DEADLINE_USEC")
        phases = [s["status"]["phase"] for s in st if isinstance(s.get("status"), dict)]
        check("status --json reached phase drained", "drained" in phases, "->".join(dedup(phases)))
        saved = [int(m.group(1)) for l in tl for m in [re.match(r"checkpoint at step (\d+)", l)] if m]
        check("the task checkpointed", bool(saved), "steps %s" % saved)
        if saved:
            print("SAVED_STEP=%d" % saved[-1])
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
    if a.boot in (2, 3):
        check("qemu exited by itself after the guest powered off ('reboot: Power down')",
              not a.killed and "reboot: Power down" in serial)
    if a.store and a.boot >= 2:
        check("completion marker in the store", os.path.exists(os.path.join(a.store, JOB, "COMPLETED.json")))
    return 0 if all(results) else 1


def dedup(seq):
    out = []
    for x in seq:
        if not out or out[-1] != x:
            out.append(x)
    return out


if __name__ == "__main__":
    sys.exit(main())
