"""`sidecars inject`: add the sidecars to Kubernetes workloads, as `linkerd inject` does.

It reads YAML and writes it back; it imports no sidecar package, only the runtime's parsers.
"""
