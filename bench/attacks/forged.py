# What a forged request costs the router, against a verified one: router CPU (from /proc)
# per forged 2 MB body, per small verified event and per verified 2 MB event, and the log.
#   python3 bench/attacks/forged.py target/release/stripe-router 50
import http.client, json, os, subprocess, sys, tempfile, time, hmac, hashlib, socket
router = sys.argv[1]; n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
secret = "whsec_test_forged"
d = tempfile.mkdtemp()
open(f"{d}/routes.yaml", "w").write("sinks:\n  a: { type: jsonl, path: a.jsonl }\nroutes: []\n")
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
env = {"PATH": os.environ["PATH"], "STRIPE_WEBHOOK_SECRET": secret, "RUST_LOG": "warn"}
args = [router, "serve", "--listen", f"127.0.0.1:{port}"]
help_ = subprocess.run([router, "serve", "--help"], capture_output=True, text=True).stdout
if "--admin-listen" in help_: args += ["--admin-listen", "off"]
p = subprocess.Popen(args, cwd=d, env=env, stderr=open(f"{d}/log", "w"))
for _ in range(200):
    try: socket.create_connection(("127.0.0.1", port)).close(); break
    except OSError: time.sleep(0.05)
def cpu():
    f = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def post(conn, body, sig):
    conn.request("POST", "/api/webhook", body, {"Stripe-Signature": sig, "Content-Type": "application/json"})
    r = conn.getresponse(); r.read(); return r.status
# a ~2 MB well-formed event, pretty-printed, signed with a wrong secret
ev = {"id": "evt_forged", "object": "event", "type": "checkout.session.completed", "created": int(time.time()),
      "data": {"object": {"object": "checkout.session", "metadata": {f"k{i}": "v" * 400 for i in range(4800)}}}}
big = json.dumps(ev, indent=2).encode()
while len(big) > 2 * 1024 * 1024 - 100:
    ev["data"]["object"]["metadata"].popitem(); big = json.dumps(ev, indent=2).encode()
t = int(time.time())
bad = f"t={t},v1=" + hmac.new(b"wrong", f"{t}.".encode() + big, hashlib.sha256).hexdigest()
conn = http.client.HTTPConnection("127.0.0.1", port)
c0 = cpu(); statuses = {}
for _ in range(n):
    st = post(conn, big, bad); statuses[st] = statuses.get(st, 0) + 1
    if st != 400: conn = http.client.HTTPConnection("127.0.0.1", port)
c1 = cpu()
print(f"forged {len(big)} B x{n}: {statuses} router CPU {(c1-c0)/n*1000:.2f} ms/request")
# verified small events
import base64
key = secret  # Stripe signs with the secret string itself
c0 = cpu(); statuses = {}
for i in range(n * 10):
    e = json.dumps({"id": f"evt_ok_{i}", "object": "event", "type": "x.y", "created": int(time.time()), "data": {"object": {}}}, indent=2).encode()
    t = int(time.time())
    sig = f"t={t},v1=" + hmac.new(key.encode(), f"{t}.".encode() + e, hashlib.sha256).hexdigest()
    st = post(conn, e, sig); statuses[st] = statuses.get(st, 0) + 1
c1 = cpu()
print(f"verified small x{n*10}: {statuses} router CPU {(c1-c0)/(n*10)*1000:.3f} ms/request")
# signed 2 MB event, verified (unmatched)
c0 = cpu(); statuses = {}
for i in range(n):
    ev["id"] = f"evt_big_{i}"; b = json.dumps(ev, indent=2).encode(); t = int(time.time())
    sig = f"t={t},v1=" + hmac.new(key.encode(), f"{t}.".encode() + b, hashlib.sha256).hexdigest()
    st = post(conn, b, sig); statuses[st] = statuses.get(st, 0) + 1
c1 = cpu()
print(f"verified {len(b)} B x{n}: {statuses} router CPU {(c1-c0)/n*1000:.2f} ms/request")
log = open(f"{d}/log").read()
print(f"log: {len(log.splitlines())} lines, {len(log)} bytes")
p.terminate(); p.wait()
