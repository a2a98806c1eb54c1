//! gRPC bindings for the protocols StoppableContainer speaks with kubelet.
//!
//! The `.proto` files under `proto/` are written from the published specifications' message
//! names and field numbers (CSI spec v1.x `csi.proto`, kubelet
//! `pkg/kubelet/apis/pluginregistration/v1/api.proto`), trimmed to the services this project
//! serves: CSI Identity and Node, and plugin registration.

/// CSI v1 (`package csi.v1`): Identity and Node services.
pub mod csi {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("csi.v1");
}

/// Kubelet plugin registration v1 (`package pluginregistration`).
pub mod registration {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("pluginregistration");
}
