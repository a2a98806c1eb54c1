//! How bytes reach the plugin's gRPC services: adapters between an accepted socket and tonic.
//! Nothing here knows about volumes, pods or mounts; the node plugin's domain modules never look
//! at HTTP/2.

pub mod authority;
