#!/usr/bin/env python3
"""HTTPS: the http example against nginx, in one run, on this machine.

Both serve `GET /` with the same 17-byte body over TLS 1.3 with the same
ECDSA P-256 certificate, one process (one worker) each. For each server,
alternating, ROUNDS times:

  keep-alive   wrk -t1 -c50 -dDURs https://127.0.0.1:PORT/
  handshakes   iomux bench --new-conn --mode http --tls (a full handshake
               per request), -c 8
  s_time       openssl s_time -new (a second handshake client)

and the server's CPU (utime + stime of its process, /proc/PID/stat)
over each. Prints one line per measurement and the medians; stops what
it started by PID.

Usage, from the repository root (needs wrk, openssl, curl and nginx):
  cargo build --release --example http && cargo build --release -p iomux-cli
  python3 docs/perf/tls/against-nginx.py
Environment: DUR (seconds per measurement, 10), ROUNDS (3),
BACKEND (the http example's IOMUX_BACKEND, epoll), NGINX (/usr/sbin/nginx).
"""
import json
import os, re, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
HTTP = os.path.join(ROOT, 'target/release/examples/http')
IOMUX = os.path.join(ROOT, 'target/release/iomux')
NGINX = os.environ.get('NGINX', '/usr/sbin/nginx')
DUR = os.environ.get('DUR', '10')
ROUNDS = int(os.environ.get('ROUNDS', '3'))
BACKEND = os.environ.get('BACKEND', 'epoll')
TCK = os.sysconf('SC_CLK_TCK')
IOMUX_PORT, NGINX_PORT = 18443, 18444

def cpu(pid):
    fields = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TCK

def wait_port(port):
    import socket
    for _ in range(100):
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f'nothing listens on {port}')

def measure(pid, cmd, parse):
    c0 = cpu(pid)
    out = subprocess.run(cmd, capture_output=True, text=True)
    c1 = cpu(pid)
    n, secs = parse(out.stdout)
    if n == 0:
        sys.exit(f'{cmd}: nothing measured\n{out.stdout}\n{out.stderr}')
    return n / secs, (c1 - c0) / n * 1e6

def wrk(out):
    m = re.search(r'(\d+) requests in ([\d.]+)s', out)
    errors = re.search(r'Non-2xx|Socket errors', out)
    if errors:
        sys.exit(f'wrk saw errors:\n{out}')
    return int(m.group(1)), float(m.group(2))

def bench(out):
    r = json.loads(out)
    if not r['ok'] or any(r['errors'].values()):
        sys.exit(f'bench saw errors:\n{out}')
    return r['requests'], r['window_secs']

def s_time(out):
    m = re.search(r'(\d+) connections in ([\d.]+) real seconds', out)
    return int(m.group(1)), float(m.group(2))

def main():
    tmp = tempfile.mkdtemp(prefix='iomux-tls-')
    cert, key = os.path.join(tmp, 'cert.pem'), os.path.join(tmp, 'key.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
                    '-nodes', '-days', '2', '-subj', '/CN=localhost',
                    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
                    '-addext', 'basicConstraints=critical,CA:FALSE',
                    '-keyout', key, '-out', cert], check=True, capture_output=True)
    conf = os.path.join(tmp, 'nginx.conf')
    with open(conf, 'w') as f:
        f.write(f"""worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 10000000;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{NGINX_PORT} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets off;
        location / {{
            default_type "text/plain; charset=utf-8";
            return 200 "Hello from iomux\\n";
        }}
    }}
}}
""")
    env = dict(os.environ, IOMUX_BACKEND=BACKEND)
    ours = subprocess.Popen([HTTP, f'127.0.0.1:{IOMUX_PORT}', '--tls-cert', cert, '--tls-key', key],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    master = subprocess.Popen([NGINX, '-c', conf, '-p', tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(IOMUX_PORT)
        wait_port(NGINX_PORT)
        worker = int(subprocess.run(['pgrep', '-P', str(master.pid)], capture_output=True, text=True).stdout.split()[0])
        servers = [('iomux', ours.pid, IOMUX_PORT), ('nginx', worker, NGINX_PORT)]
        print(f'# {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}; {os.uname().release}; '
              f'{os.cpu_count()} cores; http example backend {BACKEND}; {DUR} s each, {ROUNDS} rounds')
        for name, _, port in servers:
            head = subprocess.run(['curl', '-s', '-i', '--cacert', cert, f'https://localhost:{port}/'],
                                  capture_output=True).stdout
            print(f'# {name}: response of {len(head)} bytes: {head!r}')
        results = {}
        for _ in range(ROUNDS):
            for kind in ('keep-alive', 'handshakes', 's_time'):
                for name, pid, port in servers:
                    if kind == 'keep-alive':
                        cmd, parse = ['wrk', '-t1', '-c50', f'-d{DUR}s', f'https://127.0.0.1:{port}/'], wrk
                    elif kind == 'handshakes':
                        cmd = [IOMUX, 'bench', '--addr', f'127.0.0.1:{port}', '--mode', 'http', '--tls',
                               '--tls-ca', cert, '--tls-name', 'localhost', '-c', '8', '-d', DUR,
                               '--warmup', '1', '--new-conn', '--json']
                        parse = bench
                    else:
                        cmd, parse = ['openssl', 's_time', '-connect', f'127.0.0.1:{port}', '-new',
                                      '-time', DUR], s_time
                    rate, us = measure(pid, cmd, parse)
                    results.setdefault((kind, name), []).append((rate, us))
                    print(f'{kind:11} {name:6} {rate:9.0f}/s  server CPU {us:7.1f} us per op', flush=True)
        print('# medians')
        for kind in ('keep-alive', 'handshakes', 's_time'):
            row = {}
            for name, _, _ in servers:
                rates, uss = zip(*results[(kind, name)])
                row[name] = (statistics.median(rates), statistics.median(uss))
                print(f'{kind:11} {name:6} {row[name][0]:9.0f}/s  server CPU {row[name][1]:7.1f} us per op')
            print(f'{kind:11} iomux/nginx: rate x{row["iomux"][0] / row["nginx"][0]:.2f}, '
                  f'CPU per op x{row["iomux"][1] / row["nginx"][1]:.2f}')
    finally:
        for p in (ours, master):
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == '__main__':
    main()
