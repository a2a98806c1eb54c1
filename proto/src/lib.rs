//! gRPC bindings for the protocols StoppableContainer speaks with kubelet.
//!
//! The `.proto` files under `proto/` are written from the published specifications' message
//! names and field numbers (CSI spec v1.x `csi.proto`, kubelet
//! `pkg/kubelet/apis/pluginregistration/v1/api.proto`), trimmed to the services this project
//! serves: CSI Identity and Node, and plugin registration. From the Container Runtime Interface
//! (`k8s.io/cri-api`), only the image service's `ImageStatus`, which the node plugin calls to read
//! an image's config, and the runtime service's `ListContainers` and `ContainerStatus`, with which
//! it finds a provider container as soon as the runtime runs it.

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

/// The Container Runtime Interface's image service (`ImageStatus`) and runtime service
/// (`ListContainers`, `ContainerStatus`), under both names runtimes serve them: `runtime.v1` and the older `runtime.v1alpha2` (which reuses the v1 messages: the two
/// are wire-identical).
pub mod runtime {
    /// `package runtime.v1`.
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("runtime.v1");
    }

    /// `package runtime.v1alpha2`: the same RPC under the older service name.
    pub mod v1alpha2 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("runtime.v1alpha2");
    }
}
