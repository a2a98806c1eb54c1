//! Test support for the reconcile tests against a real (private) Kubernetes 1.20 API server.

// Each test binary uses a different part of the support code.
#![allow(dead_code)]

pub mod apiserver;
pub mod cluster;
