"""A quick CPU-per-job probe, lighter than bench/run.py: N jobs x 4 replicas in a burst on a
running local cluster (UCLOUD_CLUSTER, default itest), the operator as a subprocess, its CPU
seconds read from /proc before and after. Usage: .venv/bin/python bench/cpu_probe.py 100"""
import os
import subprocess
import sys
import time

from kubernetes import client, config

N, R = int(sys.argv[1]), 4
kc = os.path.expanduser(f"~/.cache/ucloud-operator/kubeconfig-{os.environ.get('UCLOUD_CLUSTER', 'itest')}")
cfg = client.Configuration(); config.load_kube_config(kc, client_configuration=cfg)
api = client.ApiClient(cfg); core = client.CoreV1Api(api); custom = client.CustomObjectsApi(api)
ns = f"cpu-{int(time.time())}"
core.create_namespace({"metadata": {"name": ns}})
while True:
    try: core.read_namespaced_service_account("default", ns); break
    except Exception: time.sleep(0.2)
env = {**os.environ, "KUBECONFIG": kc}
op = subprocess.Popen([sys.executable, "-m", "ucloud_operator", "-n", ns, "--metrics-address", "127.0.0.1:19090", "--health-address", "127.0.0.1:19091", "--lease-name", ns, "--lease-namespace", ns], env=env, stdout=open("/tmp/cpujob.log", "w"), stderr=subprocess.STDOUT)
def cpu():
    f = open(f"/proc/{op.pid}/stat").read().split(")")[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
time.sleep(4); c0 = cpu(); t0 = time.time()
for i in range(N):
    custom.create_namespaced_custom_object("ucloud.dk", "v1", ns, "ucloudjobs", {"apiVersion": "ucloud.dk/v1", "kind": "UCloudJob", "metadata": {"name": f"j{i}"}, "spec": {"replicas": R, "template": {"metadata": {"annotations": {"ucloud.dk/test-exit-code": "0", "ucloud.dk/test-exit-after": "5s"}}, "spec": {"containers": [{"name": "m", "image": "x"}]}}}})
while True:
    items = custom.list_namespaced_custom_object("ucloud.dk", "v1", ns, "ucloudjobs")["items"]
    done = sum(1 for j in items if (j.get("status") or {}).get("state") == "SUCCESS")
    if done == N or time.time() - t0 > 300: break
    time.sleep(1)
c1 = cpu()
rss = [l for l in open(f"/proc/{op.pid}/status") if l.startswith("VmHWM")][0].strip()
print(f"N={N} R={R} done={done} wall={time.time()-t0:.1f}s cpu={c1-c0:.2f}s cpu/job={(c1-c0)/N*1000:.1f}ms {rss}")
op.terminate(); op.wait()
core.delete_namespace(ns)
