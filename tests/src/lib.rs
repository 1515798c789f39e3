//! Test support: a real kube-apiserver + etcd control plane for integration tests.
