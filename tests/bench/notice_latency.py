#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Notice latency and polling footprint of trainsupd against the fake cloud, and of the shell
loop users would run instead (curl polling IMDSv2 every second).

For each cloud: start scripts/fakecloud and `trainsupd run --log-target=console` with
cloud.poll_ms (default 1000), then N times: wait a random fraction of the poll interval, note
the time (client side, monotonic), POST the notice to the fake cloud, and wait for the daemon's
`EVENT=notice` line on its stderr (time-stamped by a reader thread as it arrives); clear the
notice, wait until the daemon logged `EVENT=notice-cancelled`, repeat. Reports p50/p90/p99/max.

Footprint: the daemon with the AWS provider polling every second for --idle-s seconds: RSS,
PSS, Anonymous and Private_Dirty (/proc/PID/smaps_rollup) and CPU (/proc/PID/schedstat). The
same for the shell loop (`while sleep 1; do TOKEN=$(curl -X PUT ...); curl -H "X-aws-ec2-
metadata-token: $TOKEN" .../spot/instance-action; done`): its CPU from wait4() (the loop and
every curl/sleep it reaped), its memory summed over the loop's process group every 50 ms
(time average and peak), and its notice latency measured the same way as the daemon's.

Standard library only. Run through tests/bench/notice-latency.sh.
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

EVENT_RE = re.compile(r'^(\S+) EVENT=(\S+)(.*)$')


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def field(rest, key):
    m = re.search(r'(?:^| )%s=("(?:[^"\\]|\\.)*"|[^ ]*)' % re.escape(key), rest.split(' MESSAGE=')[0])
    if not m:
        return None
    v = m.group(1)
    return v[1:-1] if v.startswith('"') else v


def pct(xs, p):
    """Nearest-rank percentile of a list (p in 0..100)."""
    s = sorted(xs)
    if not s:
        return float('nan')
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


# ---------------------------------------------------------------- the fake cloud

class FakeCloud:
    def __init__(self, python, script, tmp, extra=()):
        self.portfile = os.path.join(tmp, 'fc.port')
        self.logf = open(os.path.join(tmp, 'fc.err'), 'wb')
        self.proc = subprocess.Popen([python, script, '--port', '0', '--port-file', self.portfile] + list(extra),
                                     stdout=subprocess.DEVNULL, stderr=self.logf)
        for _ in range(200):
            if os.path.exists(self.portfile) and os.path.getsize(self.portfile) > 0:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError('fakecloud did not start')
        with open(self.portfile) as f:
            self.port = int(f.read().strip())
        self.url = 'http://127.0.0.1:%d' % self.port
        self.conn = None

    def call(self, method, path):
        for attempt in (0, 1):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=10)
                self.conn.request(method, path, headers={'Content-Length': '0'} if method == 'POST' else {})
                r = self.conn.getresponse()
                body = r.read()
                if r.status // 100 != 2:
                    raise RuntimeError('%s %s -> %d %s' % (method, path, r.status, body[:200]))
                return json.loads(body) if body[:1] in (b'{', b'[') else body
            except (OSError, http.client.HTTPException):
                self.conn = None
                if attempt:
                    raise

    def state(self):
        return self.call('GET', '/_fake/state')

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


# ---------------------------------------------------------------- a process whose stderr/stdout lines we time

class LineReader:
    """Reads lines from a pipe in a thread, stamping each with time.monotonic() on arrival."""

    def __init__(self, stream):
        self.lines = []                 # (monotonic, text)
        self.cond = threading.Condition()
        self.t = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.t.start()

    def _run(self, stream):
        for raw in iter(stream.readline, b''):
            now = time.monotonic()
            with self.cond:
                self.lines.append((now, raw.decode('utf-8', 'replace').rstrip('\n')))
                self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.lines)

    def wait(self, start, pred, timeout):
        """First line at index >= start for which pred(text) holds: (index, monotonic, text) or None."""
        end = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    if pred(self.lines[i][1]):
                        return i, self.lines[i][0], self.lines[i][1]
                    i += 1
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)


def event_pred(name, **fields):
    def p(text):
        m = EVENT_RE.match(text)
        if not m or m.group(2) != name:
            return False
        return all(field(m.group(3), k) == v for k, v in fields.items())
    return p


class Daemon:
    def __init__(self, binary, tmp, provider, url, poll_ms, name='d'):
        self.dir = os.path.join(tmp, name)
        os.makedirs(os.path.join(self.dir, 'dmi'), exist_ok=True)
        cfg = {'job_id': 'bench', 'tasks': [{'runtime': 'exec', 'command': ['/bin/sleep', '86400']}],
               'cloud': {'provider': provider, 'metadata_url': url, 'poll_ms': poll_ms}}
        self.cfgfile = os.path.join(self.dir, 'c.json')
        with open(self.cfgfile, 'w') as f:
            json.dump(cfg, f)
        env = dict(os.environ)
        for k in ('NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'JOURNAL_STREAM', 'TRAINSUPD_CONFIG'):
            env.pop(k, None)
        env.update(TRAINSUPD_STATE_DIR=os.path.join(self.dir, 'state'),
                   TRAINSUPD_CONTROL=os.path.join(self.dir, 'control'),
                   TRAINSUPD_DMI_DIR=os.path.join(self.dir, 'dmi'))
        self.env = env
        self.binary = binary
        self.proc = subprocess.Popen([binary, 'run', '--config', self.cfgfile, '--log-target=console'],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env)
        self.out = LineReader(self.proc.stderr)
        if not self.out.wait(0, event_pred('started'), 15):
            self.stop()
            raise RuntimeError('daemon did not start: %s' % '\n'.join(t for _, t in self.out.lines[-20:]))

    def status(self):
        r = subprocess.run([self.binary, 'status', '--json'], env=self.env, capture_output=True, timeout=15)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


# ---------------------------------------------------------------- latency

CASES = {
    # cloud: (provider, notice kind posted, post query, the daemon's NOTICE_KIND)
    'aws': ('aws', 'spot-interruption', 'in_s=120&action=terminate', 'spot-interruption'),
    'gce': ('gce', 'preempt', '', 'preempt'),
    'azure': ('azure', 'preempt', 'in_s=30', 'preempt'),
    'alibaba': ('alibaba', 'spot-interruption', 'in_s=300', 'spot-interruption'),
}


def wait_polls(fc, cloud, n, timeout=10):
    """Wait until the fake cloud has answered n more requests of that cloud."""
    t0 = fc.state()['requests'][cloud]['total']
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if fc.state()['requests'][cloud]['total'] >= t0 + n:
            return True
        time.sleep(0.05)
    return False


def measure_daemon(args, tmp, cloud, poll_ms, samples):
    provider, kind, query, want_kind = CASES[cloud]
    fc = FakeCloud(args.python, args.fakecloud, tmp, ['--log', os.path.join(tmp, 'fc-%s.log' % cloud)])
    d = None
    res = {'cloud': cloud, 'poll_ms': poll_ms, 'lat': [], 'lat_daemon': [], 'missed': 0, 'dups': 0,
           'requests': 0, 'errors': 0}
    try:
        d = Daemon(args.trainsupd, tmp, provider, fc.url, poll_ms, name='d-%s' % cloud)
        # Let the watch settle into its steady state (first polls, tokens, a long-poll parked).
        if cloud != 'gce':
            wait_polls(fc, cloud, 2)
        time.sleep(1.5 * poll_ms / 1000.0)
        req0 = fc.state()['requests'][cloud]['total']
        t_start = time.monotonic()
        for i in range(samples):
            time.sleep(random.uniform(0, poll_ms / 1000.0))
            mark = d.out.mark()
            t0 = time.monotonic()
            wall0 = time.time()
            fc.call('POST', '/_fake/notice?cloud=%s&kind=%s%s' % (cloud, kind, '&' + query if query else ''))
            hit = d.out.wait(mark, event_pred('notice', NOTICE_KIND=want_kind), 10 + 3 * poll_ms / 1000.0)
            if not hit:
                res['missed'] += 1
                log('  %s #%d: no EVENT=notice within the timeout' % (cloud, i))
            else:
                res['lat'].append((hit[1] - t0) * 1000.0)
                # The daemon's own time stamp (ms resolution) against the post's wall time.
                ts = hit[2].split(' ', 1)[0]
                try:
                    st = time.mktime(time.strptime(ts[:19], '%Y-%m-%dT%H:%M:%S')) - time.timezone
                    res['lat_daemon'].append((st + int(ts[20:23]) / 1000.0 - wall0) * 1000.0)
                except ValueError:
                    pass
            mark2 = d.out.mark()
            fc.call('POST', '/_fake/clear?cloud=%s' % cloud)
            if not d.out.wait(mark2, event_pred('notice-cancelled', NOTICE_KIND=want_kind),
                              10 + 3 * poll_ms / 1000.0):
                raise RuntimeError('%s: the daemon did not log notice-cancelled after a clear; '
                                   'cannot take the next sample' % cloud)
            if hit:
                n = sum(1 for j in range(mark, d.out.mark())
                        if event_pred('notice', NOTICE_KIND=want_kind)(d.out.lines[j][1]))
                res['dups'] += max(0, n - 1)
        res['elapsed_s'] = time.monotonic() - t_start
        res['requests'] = fc.state()['requests'][cloud]['total'] - req0
        res['errors'] = sum(1 for _, t in d.out.lines if event_pred('error')(t))
        rc = d.stop()
        res['exit'] = rc
        d = None
    finally:
        if d:
            d.stop()
        fc.stop()
    return res


# ---------------------------------------------------------------- footprint

def smaps(pid):
    out = {}
    try:
        with open('/proc/%d/smaps_rollup' % pid) as f:
            for line in f:
                k, _, v = line.partition(':')
                if k in ('Rss', 'Pss', 'Anonymous', 'Private_Dirty', 'Private_Clean'):
                    out[k] = int(v.split()[0])
    except OSError:
        return None
    return out


def schedstat_ns(pid):
    with open('/proc/%d/schedstat' % pid) as f:
        return int(f.read().split()[0])


def pgroup_members(pgid):
    pids = []
    for e in os.listdir('/proc'):
        if not e.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % e) as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rindex(')') + 2:].split()
        if rest[0] != 'Z' and int(rest[2]) == pgid:
            pids.append(int(e))
    return pids


def footprint_daemon(args, tmp):
    fc = FakeCloud(args.python, args.fakecloud, tmp, [])
    d = None
    try:
        d = Daemon(args.trainsupd, tmp, 'aws', fc.url, 1000, name='d-idle')
        wait_polls(fc, 'aws', 3)
        time.sleep(2)
        pid = d.proc.pid
        req0 = fc.state()['requests']['aws']['total']
        c0, t0 = schedstat_ns(pid), time.monotonic()
        samples = []
        while time.monotonic() - t0 < args.idle_s:
            time.sleep(1)
            s = smaps(pid)
            if s:
                samples.append(s)
        c1, t1 = schedstat_ns(pid), time.monotonic()
        req = fc.state()['requests']['aws']['total'] - req0
        alive = d.status() is not None
        with open('/proc/%d/status' % pid) as f:
            hwm = int(re.search(r'VmHWM:\s+(\d+)', f.read()).group(1))
        d.stop()
        d = None
    finally:
        if d:
            d.stop()
        fc.stop()
    last = samples[-1]
    return {'window_s': t1 - t0, 'cpu_ms': (c1 - c0) / 1e6, 'cpu_pct': 100.0 * (c1 - c0) / 1e9 / (t1 - t0),
            'rss_kb': last['Rss'], 'rss_peak_kb': hwm, 'pss_kb': last['Pss'], 'anon_kb': last['Anonymous'],
            'private_dirty_kb': last['Private_Dirty'],
            'anon_max_kb': max(s['Anonymous'] for s in samples),
            'requests': req, 'answered_status': alive}


SHELL_LOOP = r'''
B=$1
while sleep 1; do
        TOKEN=$(curl -s -X PUT "$B/latest/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 21600")
        if curl -sf -H "X-aws-ec2-metadata-token: $TOKEN" "$B/latest/meta-data/spot/instance-action" >/dev/null; then
                echo notice
        else
                echo none
        fi
done
'''


def start_loop(fc):
    env = dict(os.environ)
    for k in ('http_proxy', 'HTTP_PROXY', 'all_proxy', 'ALL_PROXY'):
        env.pop(k, None)
    return subprocess.Popen(['/bin/bash', '-c', SHELL_LOOP, 'loop', fc.url], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, start_new_session=True)


def stop_loop(p):
    """SIGTERM to the loop's process group; returns wait4's rusage (the loop and all it reaped)."""
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    _, _, ru = os.wait4(p.pid, 0)
    p.returncode = 0
    return ru


def footprint_loop(args, tmp):
    fc = FakeCloud(args.python, args.fakecloud, tmp, [])
    p = None
    try:
        t0 = time.monotonic()
        p = start_loop(fc)
        out = LineReader(p.stdout)
        sums, bash_only = [], []
        next_sample = time.monotonic()
        while time.monotonic() - t0 < args.idle_s:
            tot = {'Rss': 0, 'Pss': 0, 'Anonymous': 0, 'Private_Dirty': 0, 'n': 0}
            for pid in pgroup_members(p.pid):
                s = smaps(pid)
                if not s:
                    continue
                for k in ('Rss', 'Pss', 'Anonymous', 'Private_Dirty'):
                    tot[k] += s[k]
                tot['n'] += 1
                if pid == p.pid:
                    bash_only.append(s)
            sums.append(tot)
            next_sample += 0.05
            time.sleep(max(0, next_sample - time.monotonic()))
        ru = stop_loop(p)
        t1 = time.monotonic()
        p = None
        polls = sum(1 for _, t in out.lines if t in ('none', 'notice'))
    finally:
        if p:
            stop_loop(p)
        fc.stop()
    cpu_s = ru.ru_utime + ru.ru_stime

    def avg(k):
        return statistics.mean(s[k] for s in sums)
    return {'window_s': t1 - t0, 'cpu_ms': cpu_s * 1000, 'cpu_pct': 100.0 * cpu_s / (t1 - t0), 'polls': polls,
            'rss_avg_kb': avg('Rss'), 'rss_peak_kb': max(s['Rss'] for s in sums),
            'pss_avg_kb': avg('Pss'), 'pss_peak_kb': max(s['Pss'] for s in sums),
            'anon_avg_kb': avg('Anonymous'), 'anon_peak_kb': max(s['Anonymous'] for s in sums),
            'private_dirty_avg_kb': avg('Private_Dirty'),
            'private_dirty_peak_kb': max(s['Private_Dirty'] for s in sums),
            'procs_avg': statistics.mean(s['n'] for s in sums), 'procs_peak': max(s['n'] for s in sums),
            'maxrss_kb': ru.ru_maxrss,
            'bash_rss_kb': bash_only[-1]['Rss'] if bash_only else 0,
            'bash_anon_kb': bash_only[-1]['Anonymous'] if bash_only else 0}


def latency_loop(args, tmp, samples):
    fc = FakeCloud(args.python, args.fakecloud, tmp, [])
    p = None
    res = {'cloud': 'aws (shell loop)', 'poll_ms': 1000, 'lat': [], 'missed': 0, 'lat_daemon': [], 'dups': 0}
    try:
        p = start_loop(fc)
        out = LineReader(p.stdout)
        if not out.wait(0, lambda t: t == 'none', 10):
            raise RuntimeError('the shell loop does not poll')
        for i in range(samples):
            time.sleep(random.uniform(0, 1.0))
            mark = out.mark()
            t0 = time.monotonic()
            fc.call('POST', '/_fake/notice?cloud=aws&kind=spot-interruption&in_s=120')
            hit = out.wait(mark, lambda t: t == 'notice', 10)
            if hit:
                res['lat'].append((hit[1] - t0) * 1000.0)
            else:
                res['missed'] += 1
            fc.call('POST', '/_fake/clear?cloud=aws')
            # Sequential loop: once it printed "none", every later poll started after the clear.
            if not out.wait(out.mark(), lambda t: t == 'none', 10):
                raise RuntimeError('the shell loop stopped polling')
        stop_loop(p)
        p = None
    finally:
        if p:
            stop_loop(p)
        fc.stop()
    return res


# ---------------------------------------------------------------- report

def lat_line(r, target_ms=None):
    lat = r['lat']
    if not lat:
        return '%-18s poll_ms=%-5d n=0 missed=%d' % (r['cloud'], r['poll_ms'], r['missed'])
    s = '%-18s poll_ms=%-5d n=%-3d p50=%7.1f ms  p90=%7.1f ms  p99=%7.1f ms  max=%7.1f ms  mean=%7.1f ms' % (
        r['cloud'], r['poll_ms'], len(lat), pct(lat, 50), pct(lat, 90), pct(lat, 99), max(lat), statistics.mean(lat))
    s += '  missed=%d duplicates=%d' % (r['missed'], r['dups'])
    if r.get('lat_daemon'):
        s += '  (daemon-stamped p50=%.0f p99=%.0f ms)' % (pct(r['lat_daemon'], 50), pct(r['lat_daemon'], 99))
    if target_ms is not None:
        s += '  target p99<=%d ms: %s' % (target_ms, 'met' if pct(lat, 99) <= target_ms and not r['missed'] else 'NOT MET')
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--trainsupd', required=True)
    ap.add_argument('--fakecloud', required=True)
    ap.add_argument('--python', default=sys.executable)
    ap.add_argument('--samples', type=int, default=50)
    ap.add_argument('--poll-ms', type=int, default=1000)
    ap.add_argument('--idle-s', type=float, default=60)
    ap.add_argument('--clouds', default='aws,gce,azure,alibaba')
    ap.add_argument('--skip-footprint', action='store_true')
    ap.add_argument('--skip-loop', action='store_true')
    ap.add_argument('--out', required=True)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix='trainsupd-bench.')
    lines = []
    try:
        lines.append('# trainsupd notice latency and polling footprint (%s, %s, %d cores, %s)' % (
            time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), os.uname().machine, os.cpu_count(),
            subprocess.run([args.trainsupd, '--version'], capture_output=True, text=True).stdout.strip()))
        lines.append('# latency = client-side POST of the notice to the fake cloud -> the EVENT=notice line read')
        lines.append('# from the daemon\'s stderr; %d notices per cloud, posted at a random phase of the poll cycle' %
                     args.samples)
        lines.append('')
        lines.append('## notice latency')
        results = []
        for cloud in args.clouds.split(','):
            log('latency: %s, poll %d ms, %d notices' % (cloud, args.poll_ms, args.samples))
            r = measure_daemon(args, tmp, cloud, args.poll_ms, args.samples)
            if cloud == 'gce':
                r['cloud'] = 'gce (long-poll)'
                target = 100
            else:
                target = args.poll_ms + 50
            results.append(r)
            lines.append(lat_line(r, target))
            log('  ' + lines[-1])
            lines.append('%-18s requests/s=%.2f  error events=%d  exit on SIGTERM=%s' % (
                '', r['requests'] / r['elapsed_s'], r['errors'], r.get('exit')))
        if not args.skip_loop:
            log('latency: shell loop (curl every 1 s), %d notices' % args.samples)
            r = latency_loop(args, tmp, args.samples)
            lines.append(lat_line(r))
            log('  ' + lines[-1])
        if not args.skip_footprint:
            lines.append('')
            lines.append('## footprint while polling every second for %g s (AWS IMDSv2)' % args.idle_s)
            log('footprint: trainsupd, %g s' % args.idle_s)
            f = footprint_daemon(args, tmp)
            lines.append('trainsupd:   cpu=%.1f ms over %.1f s (%.4f %%)  rss=%d kB (peak %d)  pss=%d kB  '
                         'anonymous=%d kB (max %d)  private_dirty=%d kB  metadata requests=%d (%.2f/s)' % (
                             f['cpu_ms'], f['window_s'], f['cpu_pct'], f['rss_kb'], f['rss_peak_kb'], f['pss_kb'],
                             f['anon_kb'], f['anon_max_kb'], f['private_dirty_kb'], f['requests'],
                             f['requests'] / f['window_s']))
            lines.append('trainsupd targets: private (anonymous) memory <= 4096 kB: %s; CPU <= 0.2 %%: %s' % (
                'met' if f['anon_kb'] <= 4096 and f['private_dirty_kb'] <= 4096 else 'NOT MET',
                'met' if f['cpu_pct'] <= 0.2 else 'NOT MET'))
            log('  ' + lines[-2])
            if not args.skip_loop:
                log('footprint: shell loop, %g s' % args.idle_s)
                g = footprint_loop(args, tmp)
                lines.append('shell loop:  cpu=%.1f ms over %.1f s (%.4f %%, bash + every curl/sleep it ran)  '
                             'polls=%d' % (g['cpu_ms'], g['window_s'], g['cpu_pct'], g['polls']))
                lines.append('             summed over its processes (avg %.2f, peak %d): rss avg=%d kB peak=%d kB  '
                             'pss avg=%d kB peak=%d kB  anonymous avg=%d kB peak=%d kB  private_dirty avg=%d kB '
                             'peak=%d kB  (bash alone: rss=%d kB anonymous=%d kB; largest process: rss %d kB)' % (
                                 g['procs_avg'], g['procs_peak'], g['rss_avg_kb'], g['rss_peak_kb'],
                                 g['pss_avg_kb'], g['pss_peak_kb'], g['anon_avg_kb'], g['anon_peak_kb'],
                                 g['private_dirty_avg_kb'], g['private_dirty_peak_kb'], g['bash_rss_kb'],
                                 g['bash_anon_kb'], g['maxrss_kb']))
                log('  ' + lines[-2])
                if f['cpu_pct'] > 0:
                    lines.append('ratios (shell loop / trainsupd): cpu %.0fx, pss avg %.1fx, anonymous avg %.1fx' % (
                        g['cpu_pct'] / f['cpu_pct'], g['pss_avg_kb'] / max(1, f['pss_kb']),
                        g['anon_avg_kb'] / max(1, f['anon_kb'])))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = '\n'.join(lines) + '\n'
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        f.write(text)
    sys.stdout.write(text)


if __name__ == '__main__':
    main()
