//! The StoppableContainer operator: turns a StoppableContainer into an instance, a provider pod
//! and a consumer pod, and reports on them.
//!
//! The reconcile pipeline: fetch → [`validate`] into a typed spec → pure builders
//! ([`instance_builder`], [`consumer_pod`], [`provider_pod`]) → apply → [`status`]. Which pods
//! are the operator's is decided by [`ownership`]: only those whose UID it recorded when it
//! created them. Only [`controller`] talks to the API server.

pub mod cli;
pub mod consumer_pod;
pub mod controller;
pub mod data_report;
pub mod http;
pub mod instance_builder;
pub mod meta;
pub mod metrics;
pub mod ownership;
pub mod provider_pod;
pub mod rootfs_usage;
pub mod security;
pub mod settings;
pub mod status;
pub mod storage;
pub mod validate;
