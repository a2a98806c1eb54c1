//! Fetch: what one reconcile reads, and the pure view of it the plan and the report work from.
//! The only reads of the reconcile are here; the cache (the usage ConfigMaps) is read here too.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use sc_api::consts::provider_pod_name;
use sc_api::node_report::usage_configmap_name;
use sc_api::storage::claim_name;
use sc_api::{StoppableContainer, StoppableContainerInstance};

use super::{Error, Reconciler};
use crate::data_report;
use crate::meta::is_controlled_by;
use crate::ownership::{RecordedPods, Role, classify, recorded_uid};
use crate::settings::PodSettings;
use crate::status::Found;
use crate::storage;
use crate::storage::claim::{self, ClaimFound};
use crate::storage::node_loss::NodeState;

/// The objects of one StoppableContainer, as fetched (and as this reconcile's own writes left
/// them: the executor puts each response here).
#[derive(Clone, Debug, Default)]
pub struct Children {
    /// The instance, only when this StoppableContainer controls it.
    pub instance: Option<StoppableContainerInstance>,
    /// An instance with our name that this StoppableContainer does not control (left over by an
    /// earlier StoppableContainer of the same name): never adopted, changed or deleted, and the
    /// pods it controls are foreign too.
    pub foreign_instance: Option<StoppableContainerInstance>,
    /// The pod named like the StoppableContainer (the consumer pod, if it is ours).
    pub consumer: Option<Pod>,
    /// The pod named `<name>-provider` (the provider pod, if it is ours).
    pub provider: Option<Pod>,
    /// With `spec.storage`: the claim named `<name>-rootfs` (the claim, if it is ours: see
    /// [`Children::claim_found`]).
    pub claim: Option<PersistentVolumeClaim>,
}

impl Children {
    /// Sorts what was read: an instance the StoppableContainer `sc_uid` does not control is
    /// foreign, never its instance.
    pub fn sorted(found_instance: Option<StoppableContainerInstance>, sc_uid: &str, consumer: Option<Pod>, provider: Option<Pod>) -> Self {
        let (instance, foreign_instance) = match found_instance {
            Some(instance) if !is_controlled_by(&instance, sc_uid) => (None, Some(instance)),
            found => (found, None),
        };
        Children { instance, foreign_instance, consumer, provider, claim: None }
    }

    /// The claim found by the claim's name, judged against the one the operator recorded.
    pub fn claim_found<'a>(&'a self, sc: &'a StoppableContainer) -> ClaimFound<'a> {
        claim::judge(sc, storage::recorded_claim(sc, self.instance.as_ref()), self.claim.as_ref())
    }

    /// The node whose plugin's usage report counts for `sc`: the data node; on a claim, the node
    /// the operator's consumer pod is bound to (its plugin mounted the claim there). None while
    /// no node has it (a stopped SC on a claim keeps its last figures).
    pub fn usage_node<'a>(&'a self, sc: &'a StoppableContainer) -> Option<&'a str> {
        if self.on_claim(sc) { self.consumer().owned()?.spec.as_ref()?.node_name.as_deref() } else { data_report::data_node(sc) }
    }

    /// Whether the root filesystem is (or is to be) on a claim (see [`storage::on_claim`]).
    pub fn on_claim(&self, sc: &StoppableContainer) -> bool {
        storage::on_claim(sc, self.instance.as_ref())
    }

    /// The pod that holds `role`'s name, as read (or as created by this reconcile).
    pub fn pod(&self, role: Role) -> Option<&Pod> {
        match role {
            Role::Consumer => self.consumer.as_ref(),
            Role::Provider => self.provider.as_ref(),
        }
    }

    /// Puts `pod` (None: gone) in `role`'s place.
    pub fn set_pod(&mut self, role: Role, pod: Option<Pod>) {
        match role {
            Role::Consumer => self.consumer = pod,
            Role::Provider => self.provider = pod,
        }
    }

    /// The UID the instance status records for `role`'s pod.
    pub fn recorded(&self, role: Role) -> Option<&str> {
        role.recorded_uid(self.instance.as_ref().and_then(|instance| instance.status.as_ref()))
    }

    /// `role`'s pod, judged by the recorded UID alone.
    pub fn found(&self, role: Role) -> Found<'_> {
        classify(self.pod(role), self.recorded(role), self.instance.as_ref(), role)
    }

    /// The consumer pod, judged.
    pub fn consumer(&self) -> Found<'_> {
        self.found(Role::Consumer)
    }

    /// The provider pod, judged.
    pub fn provider(&self) -> Found<'_> {
        self.found(Role::Provider)
    }

    /// Whether the instance is being deleted (it then takes its pods with it).
    pub fn instance_deleting(&self) -> bool {
        self.instance.as_ref().is_some_and(|instance| instance.metadata.deletion_timestamp.is_some())
    }

    /// What the instance status records once this reconcile is done: nothing is created after
    /// this point, so each record is kept while its pod holds the name and cleared otherwise.
    pub fn recorded_after_reconcile(&self) -> RecordedPods {
        let after = |role| recorded_uid(self.recorded(role), self.pod(role), None);
        RecordedPods { consumer: after(Role::Consumer), provider: after(Role::Provider) }
    }
}

/// What the plan needs besides the children: the operator's settings and what was read about the
/// data node.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// Shapes the pods, and the rootfs size limits.
    pub settings: &'a PodSettings,
    /// Whether the data node exists; None when it was not checked (it then counts as existing:
    /// only a 404 is proof that it is gone).
    pub data_node_exists: Option<bool>,
    /// The data node's usage ConfigMap entries (the node plugin's report, from the cache).
    pub usage: Option<&'a BTreeMap<String, String>>,
    /// With `spec.storage`: the state of the nodes the operator's pods are bound to, by node
    /// name (a node not in it counts as present: only a read is proof of a loss).
    pub pod_nodes: Option<&'a BTreeMap<String, NodeState>>,
}

impl Facts<'_> {
    /// The state of node `node`, as read.
    pub fn node_state(&self, node: &str) -> NodeState {
        self.pod_nodes.and_then(|nodes| nodes.get(node)).copied().unwrap_or(NodeState::Present)
    }

    /// False only when the data node is known to be gone.
    pub fn data_node_exists(&self) -> bool {
        self.data_node_exists.unwrap_or(true)
    }
}

impl Reconciler<'_> {
    /// Reads the instance and both pods.
    pub(super) async fn fetch(&self) -> Result<Children, Error> {
        let instance = self.instances.get_opt(&self.name).await.map_err(Error::read("the instance"))?;
        let consumer = self.pods.get_opt(&self.name).await.map_err(Error::read("the consumer pod"))?;
        let provider = self.pods.get_opt(&provider_pod_name(&self.name)).await.map_err(Error::read("the provider pod"))?;
        let mut children = Children::sorted(instance, &self.sc.uid().unwrap_or_default(), consumer, provider);
        if self.sc.spec.storage.is_some() || storage::recorded_claim(&self.sc, children.instance.as_ref()).is_some() {
            let name = claim_name(&self.name);
            children.claim = self.claims.get_opt(&name).await.map_err(Error::read(format!("the claim {name:?}")))?;
        }
        Ok(children)
    }

    /// With the root filesystem on a claim: the state of the node each of the operator's pods is
    /// bound to.
    pub(super) async fn fetch_pod_nodes(&self, sc: &StoppableContainer, children: &Children) -> Result<BTreeMap<String, NodeState>, Error> {
        let mut states = BTreeMap::new();
        if !children.on_claim(sc) {
            return Ok(states);
        }
        let bound = [Role::Consumer, Role::Provider]
            .into_iter()
            .filter_map(|role| children.found(role).owned())
            .filter_map(|pod| pod.spec.as_ref().and_then(|spec| spec.node_name.clone()));
        for node in bound {
            if let std::collections::btree_map::Entry::Vacant(entry) = states.entry(node) {
                let found = self.nodes.get_opt(entry.key()).await.map_err(Error::read(format!("node {:?}", entry.key())))?;
                entry.insert(NodeState::of(found.as_ref()));
            }
        }
        Ok(states)
    }

    /// Reads the pod named `name` (after a create found the name taken, or a delete that may
    /// have removed it at once).
    pub(super) async fn fetch_pod(&self, name: &str) -> Result<Option<Pod>, Error> {
        self.pods.get_opt(name).await.map_err(Error::read(format!("pod {name:?}")))
    }

    /// False only when the node is known to be gone (404); other errors are not proof.
    pub(super) async fn node_exists(&self, node: &str) -> Result<bool, Error> {
        let found = self.nodes.get_opt(node).await.map_err(Error::read(format!("node {node:?}")))?;
        Ok(found.is_some())
    }

    /// Node `node`'s usage ConfigMap, from the cache.
    pub(super) fn usage_configmap(&self, node: Option<&str>) -> Option<Arc<ConfigMap>> {
        self.ctx.configmaps.get(&ObjectRef::new(&usage_configmap_name(node?)).within(&self.ctx.report_namespace))
    }

    /// Node `node`'s data report (what its node plugin deleted).
    pub(super) async fn data_report(&self, node: &str) -> Result<Option<BTreeMap<String, String>>, Error> {
        data_report::fetch_report(&self.ctx.client, &self.ctx.report_namespace, node)
            .await
            .map_err(Error::read(format!("the data report of node {node:?} in namespace {:?}", self.ctx.report_namespace)))
    }
}
