"""From engines to the fleet: deployment bundles (`bundle`), their check on a node (`verify`),
and the Kubernetes manifests that serve them (`k8s`). What a node runs imports no torch."""
