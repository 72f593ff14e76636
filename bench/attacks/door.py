# The webhook port under attack, measured from outside on loopback.
#   ROUTER=target/release/stripe-router python3 bench/attacks/door.py memory
#       300 connections each declaring a 2 MiB body and sending 2 MiB - 1: the router's RSS
#   ROUTER=... python3 bench/attacks/door.py fds 1024 1100
#       the router under `prlimit --nofile=1024:1024` with 1,100 stalled connections: is a
#       valid event still answered, is /healthz, how many `accept failed` lines
import hmac, hashlib, json, os, re, socket, subprocess, sys, time, threading
BIN = os.environ.get("ROUTER", "target/release/stripe-router")
SECRET = "whsec_measure"
ROUTES = """sinks:
  out: { type: jsonl, path: sinks/out.jsonl }
routes:
  - name: all
    when: { type: "*" }
    emit: event
    to: [out]
"""
def start(prefix, extra_routes=""):
    d = f"/tmp/stripe-router-attacks/run-{time.time_ns()}"
    os.makedirs(d)
    open(f"{d}/routes.yaml","w").write(extra_routes + ROUTES)
    env = {"PATH": os.environ["PATH"], "STRIPE_WEBHOOK_SECRET": SECRET, "RUST_LOG": "info"}
    log = open(f"{d}/log", "w")
    p = subprocess.Popen(prefix + [BIN, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"], cwd=d, env=env, stderr=log, stdout=subprocess.DEVNULL)
    for _ in range(200):
        text = open(f"{d}/log").read()
        m = re.search(r"listening on http://([\d.]+):(\d+)", text)
        a = re.search(r"admin listener on http://([\d.]+):(\d+)", text)
        if m and a: return p, d, (m.group(1), int(m.group(2))), (a.group(1), int(a.group(2)))
        time.sleep(0.05)
    raise SystemExit(open(f"{d}/log").read())
def rss(p):
    st = open(f"/proc/{p.pid}/status").read()
    return {k: int(re.search(k + r":\s+(\d+)", st).group(1))//1024 for k in ("VmRSS", "VmHWM")}
def event(i):
    return json.dumps({"id": f"evt_m_{i}_{time.time_ns()}", "object":"event","type":"charge.succeeded","created":int(time.time()),"data":{"object":{"id":"ch_1"}}}, indent=2).encode()
def signed(body):
    t = int(time.time())
    sig = hmac.new(SECRET.encode(), f"{t}.".encode()+body, hashlib.sha256).hexdigest()
    return (f"POST /api/webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\nstripe-signature: t={t},v1={sig}\r\n\r\n").encode()+body
def ask(addr, req, timeout=15):
    s = socket.create_connection(addr, timeout=timeout); t0=time.time()
    s.sendall(req); data=b""
    try:
        while b"\r\n\r\n" not in data:
            c = s.recv(65536)
            if not c: break
            data += c
    except socket.timeout:
        return None, time.time()-t0
    s.close()
    return data.split(b"\r\n")[0].decode(errors="replace"), time.time()-t0

which = sys.argv[1]
if which == "memory":
    p, d, addr, admin = start([])
    time.sleep(0.5); base = rss(p)
    conns = []
    head = b"POST /api/webhook HTTP/1.1\r\nhost: x\r\ncontent-length: 2097152\r\nstripe-signature: t=1,v1=00\r\n\r\n"
    chunk = b" " * (2097152 - 1)
    def one():
        s = socket.create_connection(addr, timeout=30)
        try:
            s.sendall(head); s.sendall(chunk)
        except OSError: pass
        conns.append(s)
    threads = [threading.Thread(target=one) for _ in range(300)]
    t0=time.time()
    for t in threads: t.start()
    for t in threads: t.join()
    time.sleep(1)
    after = rss(p)
    shed = 0
    for s in conns:
        s.settimeout(0.2)
        try:
            if s.recv(100).startswith(b"HTTP/1.1 503"): shed += 1
        except OSError: pass
    ok = ask(addr, signed(event(1)))
    print(f"300 x (declared 2 MiB, sent 2 MiB-1): RSS before {base['VmRSS']} MiB, after {after['VmRSS']} MiB, peak {after['VmHWM']} MiB; 503 answers: {shed}; a valid event meanwhile: {ok[0]} in {ok[1]*1000:.0f} ms")
    p.kill()
elif which == "fds":
    n = int(sys.argv[2]); stalled_n = int(sys.argv[3])
    p, d, addr, admin = start(["prlimit", f"--nofile={n}:{n}"])
    kept = socket.create_connection(addr, timeout=15)
    stalled = []
    for _ in range(stalled_n):
        try: stalled.append(socket.create_connection(addr, timeout=5))
        except OSError as e: print("connect failed", e); break
    time.sleep(1)
    t0=time.time(); kept.sendall(signed(event(2))); r = kept.recv(4096).split(b"\r\n")[0]; t1=time.time()-t0
    new = ask(addr, signed(event(3)))
    h = ask(addr, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
    ah = ask(admin, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
    time.sleep(2)
    log = open(f"{d}/log").read()
    cap = re.search(r"capped_to=(\d+)", log)
    print(f"nofile {n}, {len(stalled)} stalled: cap {cap.group(1) if cap else 'none'}; valid event on an admitted connection: {r.decode()} in {t1*1000:.0f} ms; on a new connection: {new[0]} in {new[1]*1000:.0f} ms; public /healthz: {h[0]}; admin /healthz: {ah[0]}; 'accept failed' lines: {log.count('accept failed')}; 'connection limit reached' lines: {log.count('connection limit reached')}, summaries: {log.count('connections shed:')}")
    p.kill()
