//! Deletes a StoppableContainer's persistent data when the SC is deleted, then releases the
//! node-data finalizer the operator put on it. Only the node that holds the data does this; the
//! operator releases the finalizer itself when that node no longer exists.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use sc_api::consts::{CSI_FIELD_MANAGER, NODE_DATA_FINALIZER};
use tracing::{info, warn};

use crate::cluster::{ClusterView, sc_api_resource};
use crate::layout::ScKey;
use crate::node::NodeCore;
use crate::sys::System;

/// How often deleting StoppableContainers are looked at again when nothing changed (their data
/// may have been in use the last time).
const RESYNC: Duration = Duration::from_secs(10);

/// What to do for one StoppableContainer that is being deleted.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not ours to act on.
    Skip,
    /// The data is still mounted: wait for the consumer to go.
    Wait,
    /// Remove the data directory (if any), then release the finalizer.
    DeleteAndRelease,
}

/// Decides from the SC's metadata and this node's state (pure, for tests).
pub fn decide(
    deleting: bool,
    has_finalizer: bool,
    data_here: bool,
    data_in_use: bool,
    status_node: Option<&str>,
    this_node: &str,
) -> Decision {
    if !deleting || !has_finalizer {
        Decision::Skip
    } else if data_in_use {
        Decision::Wait
    } else if data_here || status_node == Some(this_node) {
        Decision::DeleteAndRelease
    } else {
        Decision::Skip
    }
}

/// Watches StoppableContainers forever and cleans up the ones being deleted.
pub async fn run<C: ClusterView, S: System>(client: Client, core: Arc<NodeCore<C, S>>, node_name: String) {
    let resource = sc_api_resource();
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let writer = reflector::store::Writer::new(resource);
    let store = writer.as_reader();
    let stream =
        reflector(writer, watcher(api, watcher::Config::default())).default_backoff().touched_objects().filter_map(|event| async move {
            if let Err(error) = &event {
                warn!(%error, "watching StoppableContainers failed; retrying");
            }
            event.ok()
        });
    let mut stream = std::pin::pin!(stream);
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            next = stream.next() => match next {
                Some(sc) => handle(&client, &core, &node_name, &sc).await,
                None => return,
            },
            _ = resync.tick() => {
                for sc in store.state() {
                    handle(&client, &core, &node_name, &sc).await;
                }
            }
        }
    }
}

async fn handle<C: ClusterView, S: System>(client: &Client, core: &NodeCore<C, S>, node_name: &str, sc: &DynamicObject) {
    let (Some(namespace), Some(uid)) = (sc.namespace(), sc.uid()) else { return };
    let key = ScKey { namespace, name: sc.name_any(), uid };
    let dir = core.data_root().container_dir(&key);
    let data_here = dir.exists();
    let in_use = data_here && core.is_data_in_use(&key).unwrap_or(true);
    let status_node = sc.data.pointer("/status/dataNodeName").and_then(|node| node.as_str());
    let decision = decide(
        sc.metadata.deletion_timestamp.is_some(),
        sc.finalizers().iter().any(|finalizer| finalizer == NODE_DATA_FINALIZER),
        data_here,
        in_use,
        status_node,
        node_name,
    );
    match decision {
        Decision::Skip => {}
        Decision::Wait => {
            info!(sc = %key, "StoppableContainer is being deleted but its rootfs is still mounted; waiting for the consumer to stop")
        }
        Decision::DeleteAndRelease => {
            if data_here {
                if let Err(error) = remove_data(&dir) {
                    warn!(sc = %key, dir = %dir.display(), %error, "could not delete the rootfs data; will retry");
                    return;
                }
                info!(sc = %key, dir = %dir.display(), "deleted the rootfs data");
            }
            if let Err(error) = release_finalizer(client, sc).await {
                warn!(sc = %key, %error, "could not release the node-data finalizer; will retry");
            }
        }
    }
}

/// Removes `<ns>/<name>/<uid>` and then the name and namespace directories if they became empty.
fn remove_data(dir: &Path) -> std::io::Result<()> {
    std::fs::remove_dir_all(dir)?;
    for parent in dir.ancestors().skip(1).take(2) {
        if std::fs::remove_dir(parent).is_err() {
            break;
        }
    }
    Ok(())
}

async fn release_finalizer(client: &Client, sc: &DynamicObject) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &sc.namespace().unwrap_or_default(), &sc_api_resource());
    let remaining: Vec<&String> = sc.finalizers().iter().filter(|finalizer| *finalizer != NODE_DATA_FINALIZER).collect();
    // resourceVersion makes the merge patch conditional: a concurrent finalizer change fails it
    // instead of being overwritten.
    let patch = serde_json::json!({
        "metadata": { "finalizers": remaining, "resourceVersion": sc.resource_version() }
    });
    api.patch(&sc.name_any(), &PatchParams::apply(CSI_FIELD_MANAGER), &Patch::Merge(&patch)).await?;
    info!(sc = %sc.name_any(), "released the node-data finalizer");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_data_node_deletes_and_never_while_mounted() {
        use Decision::*;
        assert_eq!(decide(false, true, true, false, Some("n1"), "n1"), Skip, "not being deleted");
        assert_eq!(decide(true, false, true, false, Some("n1"), "n1"), Skip, "finalizer already released");
        assert_eq!(decide(true, true, true, true, Some("n1"), "n1"), Wait, "still mounted");
        assert_eq!(decide(true, true, true, false, Some("n2"), "n1"), DeleteAndRelease, "data is here whatever the status says");
        assert_eq!(decide(true, true, false, false, Some("n1"), "n1"), DeleteAndRelease, "our node, nothing written yet");
        assert_eq!(decide(true, true, false, false, Some("n2"), "n1"), Skip, "another node's data");
        assert_eq!(decide(true, true, false, false, None, "n1"), Skip, "never started: the operator releases it");
    }

    #[test]
    fn remove_data_prunes_empty_parents_only() {
        let root = tempfile::tempdir().expect("tempdir");
        let first = root.path().join("containers/ns/dev/uid-1");
        let second = root.path().join("containers/ns/other/uid-2");
        std::fs::create_dir_all(first.join("upper/etc")).expect("mkdir");
        std::fs::create_dir_all(&second).expect("mkdir");
        remove_data(&first).expect("remove");
        assert!(!root.path().join("containers/ns/dev").exists());
        assert!(second.exists(), "a sibling SC's data stays");
        assert!(root.path().join("containers/ns").exists());
    }
}
