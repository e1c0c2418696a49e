"""What the cluster tiers (integration, reliability, soak, node, e2e) share, in one place.

- `cluster`: a namespace of the cluster under test (jobs, pods, events), the waits that poll it
  with a deadline and print the evidence when they time out, kubectl, and the KWOK stages' knobs
- `operator`: the operator as seen from outside (its log, /metrics, probes), and as a process
- `node`: the real node of `make test-node`
- `faultproxy`: the fault-injecting proxy between the operator and the API server

Test modules import their helpers from here; conftest files hold only fixtures (and hooks).
The API's names (group, version, plural, labels, states, reasons) come from
`ucloud_operator.models`.
"""
