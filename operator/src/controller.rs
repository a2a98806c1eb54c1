//! The reconciler: the only part of the operator that talks to the API server. Each reconcile
//! fetches what it needs, validates the spec, asks the pure builders for the desired objects,
//! creates or deletes at most what the lifecycle step needs, and writes the status.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::{self, ObjectRef, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use sc_api::consts::{
    LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY_VALUE, NODE_DATA_FINALIZER, OPERATOR_FIELD_MANAGER, SC_FINALIZER, SCI_FINALIZER,
    provider_pod_name,
};
use sc_api::node_report::usage_configmap_name;
use sc_api::{Phase, StoppableContainer, StoppableContainerInstance, StoppableContainerStatus};
use serde_json::json;

use crate::consumer_pod::build_consumer_pod;
use crate::data_report::{self, DataRelease};
use crate::http::Health;
use crate::instance_builder::{build_instance, is_controlled_by, restart_required};
use crate::ownership::{RecordedPods, Role, classify, recorded_uid};
use crate::provider_pod::{build_provider_pod, has_terminated, provider_is_current, provider_node};
use crate::rootfs_usage::{self, UsageWakeups};
use crate::settings::PodSettings;
use crate::status::{
    Found, ImageCheck, Observed, WorkloadProcess, check_image, condition, detect_provider_loss, instance_status, is_terminating, sc_status,
    start_to_redo, transition_notices, unrecorded_pod_message,
};
use crate::validate::{SpecProblem, Workload, describe_problems, validate_start};

/// Requeue while something is in motion (pods starting or terminating); pod watches usually
/// trigger a reconcile sooner.
const REQUEUE_IN_MOTION: Duration = Duration::from_secs(5);
/// Requeue when steady, to notice what watches cannot (a node that disappeared).
const REQUEUE_STEADY: Duration = Duration::from_secs(300);
/// Requeue after an error.
const REQUEUE_AFTER_ERROR: Duration = Duration::from_secs(15);
/// Requeue while a foreign object holds one of our names: no watch tells when a stranger pod
/// (unlabelled) or a leftover instance goes away, and the start should follow soon when it does.
const REQUEUE_NAME_CONFLICT: Duration = Duration::from_secs(10);

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("API request failed while {action}: {source}")]
    Kube {
        /// What the operator was doing.
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The StoppableContainer came without a namespace (the CRD is namespaced, so the API server
    /// never sends one; this guards against a broken cache).
    #[error("StoppableContainer {0:?} has no namespace")]
    NoNamespace(String),
    /// Adding or removing the operator's finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl Error {
    /// Label of the error in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube_api",
            Error::NoNamespace(_) => "no_namespace",
            Error::Finalizer(_) => "finalizer",
        }
    }
}

fn kube_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

/// Shared by every reconcile.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Shapes the pods.
    pub settings: PodSettings,
    /// Readiness and metrics.
    pub health: Arc<Health>,
    /// Where the node plugins report deleted data (the release namespace; see `data_report`).
    pub report_namespace: String,
    /// The release namespace's ConfigMaps, as watched: the node plugins' usage ConfigMaps are
    /// read from here (see `rootfs_usage`), not with a request per reconcile.
    pub configmaps: reflector::Store<ConfigMap>,
}

/// The objects of one StoppableContainer, as fetched.
struct Children {
    /// The instance, only when this StoppableContainer controls it.
    instance: Option<StoppableContainerInstance>,
    /// An instance with our name that this StoppableContainer does not control (left over by an
    /// earlier StoppableContainer of the same name): never adopted, changed or deleted, and the
    /// pods it controls are foreign too.
    foreign_instance: Option<StoppableContainerInstance>,
    consumer: Option<Pod>,
    provider: Option<Pod>,
}

impl Children {
    /// The pod that holds `role`'s name, as read (or as created by this reconcile).
    fn pod(&self, role: Role) -> Option<&Pod> {
        match role {
            Role::Consumer => self.consumer.as_ref(),
            Role::Provider => self.provider.as_ref(),
        }
    }

    fn set_pod(&mut self, role: Role, pod: Option<Pod>) {
        match role {
            Role::Consumer => self.consumer = pod,
            Role::Provider => self.provider = pod,
        }
    }

    /// The UID the instance status records for `role`'s pod.
    fn recorded(&self, role: Role) -> Option<&str> {
        role.recorded_uid(self.instance.as_ref().and_then(|instance| instance.status.as_ref()))
    }

    /// `role`'s pod, judged by the recorded UID alone.
    fn found(&self, role: Role) -> Found<'_> {
        classify(self.pod(role), self.recorded(role), self.instance.as_ref(), role)
    }

    fn consumer(&self) -> Found<'_> {
        self.found(Role::Consumer)
    }

    fn provider(&self) -> Found<'_> {
        self.found(Role::Provider)
    }

    /// What the instance status records once this reconcile is done: nothing is created after
    /// this point, so each record is kept while its pod holds the name and cleared otherwise.
    fn recorded_after_reconcile(&self) -> RecordedPods {
        let after = |role| recorded_uid(self.recorded(role), self.pod(role), None);
        RecordedPods { consumer: after(Role::Consumer), provider: after(Role::Provider) }
    }
}

/// One StoppableContainer's reconcile, with its APIs at hand.
struct Reconciler<'a> {
    ctx: &'a Context,
    sc: Arc<StoppableContainer>,
    name: String,
    key: String,
    scs: Api<StoppableContainer>,
    instances: Api<StoppableContainerInstance>,
    pods: Api<Pod>,
    nodes: Api<Node>,
}

impl<'a> Reconciler<'a> {
    fn new(ctx: &'a Context, sc: Arc<StoppableContainer>) -> Result<Self, Error> {
        let name = sc.name_any();
        let namespace = sc.namespace().ok_or_else(|| Error::NoNamespace(name.clone()))?;
        Ok(Self {
            key: format!("{namespace}/{name}"),
            scs: Api::namespaced(ctx.client.clone(), &namespace),
            instances: Api::namespaced(ctx.client.clone(), &namespace),
            pods: Api::namespaced(ctx.client.clone(), &namespace),
            nodes: Api::all(ctx.client.clone()),
            ctx,
            sc,
            name,
        })
    }

    async fn event(&self, type_: EventType, reason: &str, action: &str, note: String) {
        let event = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
        if let Err(error) = self.ctx.recorder.publish(&event, &self.sc.object_ref(&())).await {
            tracing::warn!(sc = %self.key, %error, reason, "publishing an Event failed");
        }
    }

    async fn fetch(&self) -> Result<Children, Error> {
        let found = self.instances.get_opt(&self.name).await.map_err(kube_error("reading the instance"))?;
        let sc_uid = self.sc.uid().unwrap_or_default();
        let (instance, foreign_instance) = match found {
            Some(instance) if !is_controlled_by(&instance, &sc_uid) => (None, Some(instance)),
            found => (found, None),
        };
        let consumer = self.pods.get_opt(&self.name).await.map_err(kube_error("reading the workload pod"))?;
        let provider = self.pods.get_opt(&provider_pod_name(&self.name)).await.map_err(kube_error("reading the provider pod"))?;
        Ok(Children { instance, foreign_instance, consumer, provider })
    }

    /// The image's config judged against the template the workload pod runs (the deployed
    /// snapshot while it exists) or a start would run (the current one), for the image the
    /// provider runs now: from the data node's usage report, or the status's own memory of it.
    fn image_check(&self, children: &Children, data_node: Option<&str>) -> ImageCheck {
        let template = match (children.consumer().owned(), &children.instance) {
            (Some(_), Some(instance)) => &instance.spec.template,
            _ => &self.sc.spec.template,
        };
        let workload = Workload::from_template(template, None).ok();
        let kubelet_pod = format!("{}_{}", self.name, self.sc.namespace().unwrap_or_default());
        let process = workload.as_ref().map(|workload| WorkloadProcess {
            container: workload.container(),
            pod_security: workload.pod_spec.security_context.as_ref(),
            pod: &kubelet_pod,
        });
        let usage = self.usage_configmap(data_node);
        let image_id = children.provider().owned().and_then(rootfs_usage::provider_image_id);
        let summary =
            rootfs_usage::image_summary(&self.sc, data_node, usage.as_ref().and_then(|usage| usage.data.as_ref()), image_id.as_deref());
        check_image(summary.as_ref(), process)
    }

    /// Node `node`'s usage ConfigMap, from the cache.
    fn usage_configmap(&self, node: Option<&str>) -> Option<Arc<ConfigMap>> {
        self.ctx.configmaps.get(&ObjectRef::new(&usage_configmap_name(node?)).within(&self.ctx.report_namespace))
    }

    /// False only when the node is known to be gone (404); other errors are not proof.
    async fn node_exists(&self, node: &str) -> Result<bool, Error> {
        match self.nodes.get_opt(node).await {
            Ok(found) => Ok(found.is_some()),
            Err(source) => Err(Error::Kube { action: format!("reading node {node:?}"), source }),
        }
    }

    /// Deletes `pod`; returns whether a delete was sent. `grace_period_seconds` None keeps the
    /// pod's own terminationGracePeriodSeconds, and then a pod already being deleted is left to
    /// it; an explicit grace period is sent anyway (it can only shorten a deletion under way).
    async fn send_pod_delete(&self, pod: &Pod, grace_period_seconds: Option<u32>) -> Result<bool, Error> {
        if pod.metadata.deletion_timestamp.is_some() && grace_period_seconds.is_none() {
            return Ok(false);
        }
        let name = pod.name_any();
        // Preconditioned on the UID we checked, so a pod recreated by someone else in between is
        // never deleted.
        let params = DeleteParams {
            grace_period_seconds,
            preconditions: pod.uid().map(|uid| kube::api::Preconditions { uid: Some(uid), resource_version: None }),
            ..DeleteParams::default()
        };
        match self.pods.delete(&name, &params).await {
            Ok(_) => Ok(true),
            Err(error) if is_status(&error, 404) || is_status(&error, 409) => Ok(false),
            Err(source) => Err(Error::Kube { action: format!("deleting pod {name:?}"), source }),
        }
    }

    /// Deletes one of the operator's own pods (the pod's grace period applies), saying why.
    async fn delete_pod(&self, pod: &Pod, why: &str) -> Result<(), Error> {
        if self.send_pod_delete(pod, None).await? {
            self.event(EventType::Normal, "PodDeleted", "Delete", format!("deleted pod {:?}: {why}", pod.name_any())).await;
        }
        Ok(())
    }

    /// Deletes the pods that claim to be ours without their UID being recorded (forged, or
    /// created by an operator that crashed before recording them), with a Warning each: neither
    /// the operator nor the node plugin will ever use them, and the operator creates its own once
    /// the name is free. Returns whether any was deleted.
    async fn delete_unrecorded_pods(&self, children: &Children) -> Result<bool, Error> {
        let mut deleted = false;
        for role in [Role::Consumer, Role::Provider] {
            let Some(pod) = children.found(role).unrecorded() else { continue };
            if self.send_pod_delete(pod, None).await? {
                deleted = true;
                let note = unrecorded_pod_message(pod, role.describe());
                tracing::warn!(sc = %self.key, pod = %pod.name_any(), uid = ?pod.uid(), "deleting a pod the operator did not create");
                self.event(EventType::Warning, "UnrecordedPod", "Delete", note).await;
            }
        }
        Ok(deleted)
    }

    /// Creates `role`'s pod and at once records its UID, from the create response, in the
    /// instance status: from then on it is the operator's pod (for the node plugin too), and only
    /// that pod. A pod that already holds the name (409) is read, never adopted: its UID is not
    /// recorded, so it is classified as unrecorded or foreign.
    async fn create_pod(&self, children: &mut Children, role: Role, pod: &Pod) -> Result<(), Error> {
        let name = pod.name_any();
        let params = PostParams { dry_run: false, field_manager: Some(OPERATOR_FIELD_MANAGER.into()) };
        match self.pods.create(&params, pod).await {
            Ok(created) => {
                self.event(EventType::Normal, "PodCreated", "Create", format!("created pod {name:?}")).await;
                self.record_created_pod(children, role, &created).await?;
                children.set_pod(role, Some(created));
                Ok(())
            }
            Err(error) if is_status(&error, 409) => {
                let holder = self.pods.get_opt(&name).await.map_err(kube_error(format!("reading pod {name:?}")))?;
                children.set_pod(role, holder);
                Ok(())
            }
            Err(source) => {
                let message = format!("creating pod {name:?} failed: {source}");
                self.event(EventType::Warning, "PodCreateFailed", "Create", message).await;
                Err(Error::Kube { action: format!("creating pod {name:?}"), source })
            }
        }
    }

    /// Records the UID of a pod just created in the instance status. The apply carries every
    /// status field this manager owns (the status as last written) plus the new UID: an apply
    /// that named only the UID would drop the others.
    async fn record_created_pod(&self, children: &mut Children, role: Role, created: &Pod) -> Result<(), Error> {
        let Some(instance) = &children.instance else { return Ok(()) };
        let mut status = instance.status.clone().unwrap_or_default();
        let uid = recorded_uid(children.recorded(role), children.pod(role), Some(created));
        role.record(&mut status, Some(created.name_any()), uid);
        children.instance = Some(self.apply_instance_status(&status, "recording the UID of a created pod").await?);
        Ok(())
    }

    async fn apply_instance_status(
        &self,
        status: &sc_api::StoppableContainerInstanceStatus,
        action: &str,
    ) -> Result<StoppableContainerInstance, Error> {
        let body = json!({ "apiVersion": sc_api::consts::API_VERSION, "kind": sc_api::consts::SCI_KIND, "status": status });
        self.instances
            .patch_status(&self.name, &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(), &Patch::Apply(body))
            .await
            .map_err(kube_error(action))
    }

    async fn apply_instance(&self, desired: &StoppableContainerInstance) -> Result<StoppableContainerInstance, Error> {
        let params = PatchParams::apply(OPERATOR_FIELD_MANAGER).force();
        let mut body = serde_json::to_value(desired).unwrap_or_default();
        body["apiVersion"] = json!(sc_api::consts::API_VERSION);
        body["kind"] = json!(sc_api::consts::SCI_KIND);
        self.instances.patch(&self.name, &params, &Patch::Apply(body)).await.map_err(kube_error("applying the instance"))
    }

    /// Adds or removes one finalizer, conditioned on the resourceVersion that was read.
    async fn set_finalizer(&self, finalizer: &str, present: bool) -> Result<(), Error> {
        let current = self.sc.finalizers().to_vec();
        if current.iter().any(|f| f == finalizer) == present {
            return Ok(());
        }
        let mut wanted: Vec<String> = current.into_iter().filter(|f| f != finalizer).collect();
        if present {
            wanted.push(finalizer.to_owned());
        }
        let patch = json!({ "metadata": { "finalizers": wanted, "resourceVersion": self.sc.resource_version() } });
        self.scs
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(kube_error(format!("updating finalizer {finalizer}")))?;
        Ok(())
    }

    async fn write_status(&self, status: &StoppableContainerStatus) -> Result<(), Error> {
        if self.sc.status.as_ref() == Some(status) {
            return Ok(());
        }
        let body = json!({ "apiVersion": sc_api::consts::API_VERSION, "kind": sc_api::consts::SC_KIND, "status": status });
        self.scs
            .patch_status(&self.name, &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(), &Patch::Apply(body))
            .await
            .map_err(kube_error("writing the status"))?;
        Ok(())
    }

    /// Deletion: workload pod, then provider pod, then instance, then the node plugin's data.
    /// Returns the action to wait with while something remains.
    async fn teardown(&self) -> Result<Option<Action>, Error> {
        let children = self.fetch().await?;
        // No overlay can use an unrecorded pod (the node plugin refuses it), so there is no order
        // to keep with them: they go at once, and are not waited for.
        self.delete_unrecorded_pods(&children).await?;
        if let Found::Owned(consumer) = children.consumer() {
            self.delete_pod(consumer, "the StoppableContainer is being deleted").await?;
            return Ok(Some(Action::requeue(REQUEUE_IN_MOTION)));
        }
        if let Found::Owned(provider) = children.provider() {
            self.delete_pod(provider, "the StoppableContainer is being deleted and its workload pod is gone").await?;
            return Ok(Some(Action::requeue(REQUEUE_IN_MOTION)));
        }
        if let Some(instance) = &children.instance {
            self.release_instance(instance).await?;
            if instance.metadata.deletion_timestamp.is_none() {
                self.instances.delete(&self.name, &DeleteParams::default()).await.map_err(kube_error("deleting the instance"))?;
            }
            return Ok(Some(Action::requeue(REQUEUE_IN_MOTION)));
        }
        if self.sc.finalizers().iter().any(|f| f == NODE_DATA_FINALIZER) {
            // Only the report of the node the status names counts (a status tenants cannot
            // write); `decide` checks that it names that node and this SC's UID, namespace, name.
            let release = match data_report::data_node(&self.sc) {
                None => data_report::decide(&self.sc, true, None),
                Some(node) => {
                    let exists = self.node_exists(node).await?;
                    let report = data_report::fetch_report(&self.ctx.client, &self.ctx.report_namespace, node).await.map_err(
                        kube_error(format!("reading the data report of node {node:?} in namespace {:?}", self.ctx.report_namespace)),
                    )?;
                    data_report::decide(&self.sc, exists, report.as_ref())
                }
            };
            match release {
                DataRelease::Release(reason) => {
                    self.set_finalizer(NODE_DATA_FINALIZER, false).await?;
                    let kind = if reason.is_warning() { EventType::Warning } else { EventType::Normal };
                    self.event(kind, reason.event_reason(), "Delete", reason.note()).await;
                }
                DataRelease::Wait(message) => tracing::info!(sc = %self.key, "{message}"),
            }
            return Ok(Some(Action::requeue(REQUEUE_IN_MOTION)));
        }
        self.ctx.health.metrics.forget(&self.key);
        Ok(None)
    }

    /// Removes the instance's finalizer once its pods are gone (they are, when this is called).
    async fn release_instance(&self, instance: &StoppableContainerInstance) -> Result<(), Error> {
        if !instance.finalizers().iter().any(|f| f == SCI_FINALIZER) {
            return Ok(());
        }
        let wanted: Vec<&String> = instance.finalizers().iter().filter(|f| *f != SCI_FINALIZER).collect();
        let patch = json!({ "metadata": { "finalizers": wanted, "resourceVersion": instance.resource_version() } });
        self.instances
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(kube_error("releasing the instance"))?;
        Ok(())
    }

    /// The lifecycle step for the current spec, then the status.
    async fn apply(&self) -> Result<Action, Error> {
        let mut children = self.fetch().await?;
        // Whether running or not: a pod that claims to be ours is never left to look like it.
        if self.delete_unrecorded_pods(&children).await? {
            // An unscheduled pod goes at once: the name may be free for ours already.
            children = self.fetch().await?;
        }
        // The size the root filesystem already has is the one its instance last deployed: a
        // filesystem only grows, so no start may ask for less.
        let current_rootfs_bytes = children.instance.as_ref().and_then(|instance| instance.spec.rootfs_size_bytes);
        let validation = validate_start(&self.sc, &self.ctx.settings.rootfs, current_rootfs_bytes);
        let spec_problems = validation.as_ref().err().map(|problems| describe_problems(problems));
        let previous = self.sc.status.clone();
        let mut data_node = previous.as_ref().and_then(|status| status.data_node_name.clone());
        let instance_deleting = children.instance.as_ref().is_some_and(|i| i.metadata.deletion_timestamp.is_some());
        let want_running = self.sc.spec.running && !instance_deleting;
        let mut data_node_exists = true;
        // Seen before anything is replaced: a lost provider is replaced in this very reconcile.
        let provider_loss = if want_running {
            detect_provider_loss(
                children.consumer(),
                children.recorded(Role::Provider),
                children.provider(),
                &provider_pod_name(&self.name),
            )
        } else {
            None
        };

        if want_running {
            if let Some(foreign) = &children.foreign_instance {
                let note = format!(
                    "StoppableContainerInstance {:?} exists and is not controlled by this StoppableContainer; it and its pods are left alone",
                    foreign.name_any()
                );
                self.event(EventType::Warning, "NameConflict", "Start", note).await;
            } else if let Ok(start) = &validation {
                let valid = &start.valid;
                self.set_finalizer(NODE_DATA_FINALIZER, true).await?;
                // A start stuck on an image or a container config, whose template the user changed
                // since: made again from the new template (kubelet would retry the old one forever).
                let template_changed = children
                    .instance
                    .as_ref()
                    .is_some_and(|instance| restart_required(&self.sc, &instance.spec, Some(start.rootfs_size_bytes)));
                if let Some(stuck) = start_to_redo(children.consumer(), children.provider(), template_changed) {
                    let why = stuck.why();
                    tracing::info!(sc = %self.key, "{why}");
                    if let Some(consumer) = children.consumer().owned() {
                        self.delete_pod(consumer, &why).await?;
                    }
                    if stuck.replace_provider
                        && let Some(provider) = children.provider().owned()
                    {
                        self.delete_pod(provider, &why).await?;
                    }
                    children = self.fetch().await?;
                }
                // The instance: a fresh snapshot at a start, the deployed one while the pod exists
                // (its rootfs size included: the node plugin applies a new size at a start only).
                let deployed = match children.consumer() {
                    Found::Owned(_) => children.instance.as_ref().map(|instance| &instance.spec),
                    Found::Absent | Found::Unrecorded(_) | Found::Foreign(_) => None,
                };
                let mut desired = build_instance(&self.sc, deployed, true);
                if deployed.is_none() {
                    desired.spec.rootfs_size_bytes = Some(start.rootfs_size_bytes);
                }
                let current_spec = children.instance.as_ref().map(|instance| &instance.spec);
                if current_spec != Some(&desired.spec) || children.instance.is_none() {
                    children.instance = Some(self.apply_instance(&desired).await?);
                }
                if let Some(node) = &data_node {
                    data_node_exists = self.node_exists(node).await?;
                }
                // The provider the stop kept (or one left by a stop that had not finished, or by a
                // workload pod deleted by hand) is reused when it is what this start would build, on
                // the data node: the start is then just the workload pod and a mount. Otherwise (the
                // image or provider settings changed while stopped, an older operator made it, it
                // terminated or is on its way out) it is removed before the workload pod is created,
                // so that both pods always come from the same snapshot. No workload pod exists, so
                // nothing uses its lower layer.
                let mut reusing_provider = false;
                let mut old_provider_in_the_way = false;
                if matches!(children.consumer(), Found::Absent)
                    && let Found::Owned(provider) = children.provider()
                {
                    if data_node_exists && self.provider_is_reusable(provider, children.instance.as_ref(), data_node.as_deref()) {
                        reusing_provider = true;
                    } else {
                        old_provider_in_the_way = true;
                        let why = "a start needs a provider built from the new snapshot on the data node, and this one is not (changed image or provider settings, made by an older operator, or terminated)";
                        self.delete_pod(provider, why).await?;
                    }
                }
                // Wait until our old provider is gone; a stranger named like it is reported below
                // and must not block the workload pod's creation.
                if matches!(children.consumer(), Found::Absent)
                    && !old_provider_in_the_way
                    && data_node_exists
                    && let Some(instance) = &children.instance
                    // The image cannot run as templated: a workload pod would only crash-loop.
                    // None is made until the template (or the provider's image) changes.
                    && self.image_check(&children, data_node.as_deref()).blocking(None).is_none()
                {
                    let pod = build_consumer_pod(&valid.workload, instance, data_node.as_deref(), &self.ctx.settings);
                    self.create_pod(&mut children, Role::Consumer, &pod).await?;
                    if matches!(children.consumer(), Found::Owned(_)) {
                        self.ctx.health.metrics.start_began(&self.key);
                        let pin = data_node.as_ref().map(|node| format!(", pinned to node {node:?}")).unwrap_or_default();
                        let reuse = if reusing_provider { ", reusing the provider pod kept by the stop" } else { "" };
                        self.event(EventType::Normal, "Starting", "Start", format!("starting the workload{pin}{reuse}")).await;
                    }
                }
                if matches!(children.consumer(), Found::Foreign(_)) {
                    let note = format!("pod {:?} exists and is not owned by this StoppableContainer; it is left alone", self.name);
                    self.event(EventType::Warning, "NameConflict", "Start", note).await;
                }
            }
            self.ensure_provider(&mut children, &mut data_node, data_node_exists).await?;
            // The image cannot run as the deployed template says (no command anywhere,
            // runAsNonRoot against a root image user, a config the argv needs and the runtime did
            // not give): the workload pod goes rather than crash-looping; the provider and the
            // data stay.
            if let Some(consumer) = children.consumer().owned().filter(|pod| !is_terminating(pod))
                && let Some(problem) = self.image_check(&children, data_node.as_deref()).blocking(Some(consumer)).cloned()
            {
                self.delete_pod(consumer, &problem.message).await?;
                let holder = self.pods.get_opt(&self.name).await.map_err(kube_error("reading the workload pod"))?;
                children.set_pod(Role::Consumer, holder);
            }
        } else {
            // A deleted instance takes its pods with it; a plain stop keeps the provider.
            self.stop(&children, !instance_deleting).await?;
            children = self.fetch().await?;
            if let Some(instance) = &children.instance {
                if instance_deleting && children.consumer().owned().is_none() && children.provider().owned().is_none() {
                    self.release_instance(instance).await?;
                } else if !instance_deleting && instance.spec.running {
                    let desired = build_instance(&self.sc, Some(&instance.spec), false);
                    children.instance = Some(self.apply_instance(&desired).await?);
                }
            }
        }

        // A workload pod being deleted (a stop, or a stuck start made again) needs no restart: the
        // next pod is made from the current template anyway.
        let restart_required = match (children.consumer().owned().filter(|pod| !is_terminating(pod)), &children.instance) {
            (Some(_), Some(instance)) => {
                restart_required(&self.sc, &instance.spec, validation.as_ref().ok().map(|start| start.rootfs_size_bytes))
            }
            _ => false,
        };
        let observed = Observed {
            running: want_running,
            generation: self.sc.metadata.generation,
            spec_problems: spec_problems.clone(),
            instance_exists: children.instance.is_some(),
            foreign_instance: children.foreign_instance.as_ref().map(|instance| instance.name_any()),
            consumer: children.consumer(),
            provider: children.provider(),
            data_node: data_node.clone(),
            data_node_exists,
            restart_required,
            ignored_host_path_prefix: validation.as_ref().ok().and_then(|start| start.valid.ignored_host_path_prefix.clone()),
            provider_loss,
            image: self.image_check(&children, data_node.as_deref()),
        };
        let mut status = sc_status(&observed, Some(self.name.clone()), previous.as_ref(), Time(Timestamp::now()));
        let usage = self.usage_configmap(data_node.as_deref());
        status.rootfs = rootfs_usage::rootfs_status(&self.sc, data_node.as_deref(), usage.as_ref().and_then(|usage| usage.data.as_ref()));
        let phase = status.phase.unwrap_or_default();
        self.report_transitions(previous.as_ref(), &status).await;
        self.write_status(&status).await?;
        self.ctx.health.metrics.phase_observed(&self.key, phase);
        if let Some(instance) = children.instance.as_ref().filter(|i| i.metadata.deletion_timestamp.is_none()) {
            let wanted = instance_status(
                &status,
                children.consumer().owned(),
                children.provider().owned(),
                &children.recorded_after_reconcile(),
                instance.metadata.generation,
                want_running,
            );
            if instance.status.as_ref() != Some(&wanted) {
                self.apply_instance_status(&wanted, "writing the instance status").await?;
            }
        }
        // Stopped is steady once the workload pod is gone: the provider a stop keeps does not
        // change by itself (its watch reports what does), only one being deleted is in motion.
        let provider_leaving = children.provider().owned().is_some_and(is_terminating);
        // An unrecorded pod being deleted may have no label the pod watch selects.
        let replacing_unrecorded = children.consumer().unrecorded().is_some() || children.provider().unrecorded().is_some();
        let provider_lost = status.conditions.iter().any(|c| c.type_ == condition::PROVIDER_LOST && c.status == "True");
        let steady = matches!(phase, Phase::Running | Phase::Stopped | Phase::Failed)
            && !replacing_unrecorded
            && !provider_lost
            && !(phase == Phase::Stopped && (children.consumer().owned().is_some() || provider_leaving));
        let name_conflict = children.foreign_instance.is_some()
            || matches!(children.consumer(), Found::Foreign(_))
            || matches!(children.provider(), Found::Foreign(_));
        let requeue = match (name_conflict, steady) {
            (true, _) => REQUEUE_NAME_CONFLICT,
            (false, true) => REQUEUE_STEADY,
            (false, false) => REQUEUE_IN_MOTION,
        };
        Ok(Action::requeue(requeue))
    }

    /// The provider pod a start with `instance`'s snapshot builds on `node`.
    fn desired_provider(&self, instance: &StoppableContainerInstance, node: &str) -> Result<Pod, Vec<SpecProblem>> {
        // The provider runs the deployed snapshot's image, which the workload pod uses.
        let workload = Workload::from_template(&instance.spec.template, instance.spec.provider.as_ref())?;
        Ok(build_provider_pod(&workload, instance, node, &self.ctx.settings))
    }

    /// Whether a start with `instance` (the snapshot just applied) can keep `provider`.
    fn provider_is_reusable(&self, provider: &Pod, instance: Option<&StoppableContainerInstance>, data_node: Option<&str>) -> bool {
        let (Some(instance), Some(node)) = (instance, data_node) else { return false };
        self.desired_provider(instance, node).is_ok_and(|desired| provider_is_current(provider, &desired))
    }

    /// While the workload pod exists, makes sure the provider runs on its node. At the first
    /// start that is the node the workload pod gets bound to, recorded as the data node here
    /// before the provider exists (so the data is never on a node the status does not name). At
    /// later starts the data node is already recorded and the workload pod is pinned to it, so
    /// the provider is created at once, while the workload pod is still being scheduled.
    async fn ensure_provider(&self, children: &mut Children, data_node: &mut Option<String>, data_node_exists: bool) -> Result<(), Error> {
        let Some(consumer) = children.consumer().owned() else { return Ok(()) };
        if consumer.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let bound_to = consumer.spec.as_ref().and_then(|spec| spec.node_name.clone());
        let node = match (bound_to, data_node.as_ref()) {
            // Where the workload pod is: a provider anywhere else would be of no use to it.
            (Some(node), _) => node,
            (None, Some(node)) if data_node_exists => node.clone(),
            (None, _) => return Ok(()),
        };
        if data_node.is_none() {
            // The whole previous status plus the node: an apply that named only this field would
            // drop the other status fields this manager owns until the final status write.
            let recorded = StoppableContainerStatus { data_node_name: Some(node.clone()), ..self.sc.status.clone().unwrap_or_default() };
            let patch = json!({ "apiVersion": sc_api::consts::API_VERSION, "kind": sc_api::consts::SC_KIND, "status": recorded });
            self.scs
                .patch_status(&self.name, &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(), &Patch::Apply(patch))
                .await
                .map_err(kube_error("recording the data node"))?;
            self.event(
                EventType::Normal,
                "DataNodeAssigned",
                "Start",
                format!("the root filesystem is created on node {node:?}; later starts are pinned there"),
            )
            .await;
            *data_node = Some(node.clone());
        }
        if let Some(provider) = children.provider().owned().filter(|pod| has_terminated(pod)) {
            // Evicted, preempted or rejected: it never runs again, and its containers have
            // stopped, so it goes at once (as the pod garbage collector removes terminated
            // pods) and the replacement below keeps the image in use without delay.
            let name = provider.name_any();
            if self.send_pod_delete(provider, Some(0)).await? {
                let why = "it terminated and never runs again; a new provider pod replaces it";
                self.event(EventType::Normal, "PodDeleted", "Delete", format!("deleted pod {name:?}: {why}")).await;
            }
            let holder = self.pods.get_opt(&name).await.map_err(kube_error(format!("reading pod {name:?}")))?;
            children.set_pod(Role::Provider, holder);
        }
        match children.provider() {
            Found::Owned(provider) => {
                if provider_node(provider).as_deref() != Some(node.as_str()) {
                    self.delete_pod(provider, "it is not on the node the workload pod runs on or is pinned to").await?;
                }
            }
            // Being deleted (see `delete_unrecorded_pods`); ours follows once the name is free.
            Found::Unrecorded(_) => {}
            Found::Foreign(_) => {
                let note =
                    format!("pod {:?} exists and is not owned by this StoppableContainer; it is left alone", provider_pod_name(&self.name));
                self.event(EventType::Warning, "NameConflict", "Start", note).await;
            }
            Found::Absent => {
                let Some(desired) = children.instance.as_ref().map(|instance| self.desired_provider(instance, &node)) else {
                    return Ok(());
                };
                match desired {
                    Ok(pod) => self.create_pod(children, Role::Provider, &pod).await?,
                    Err(problems) => self.event(EventType::Warning, "InvalidSpec", "Start", describe_problems(&problems)).await,
                }
            }
        }
        Ok(())
    }

    /// Stop: delete the workload pod. A plain stop (`keep_provider`) keeps the provider: it is a
    /// pause process (10m CPU, 16Mi requested) whose only job is to keep the image mounted as the
    /// overlay's lower layer, and keeping it makes the next start just the workload pod and a
    /// mount (the persistent data is in the upper dir on the node, not in the provider). When the
    /// instance is being deleted the provider goes too, only once the workload pod is gone (it
    /// keeps the image and the lower layer alive while the workload runs).
    async fn stop(&self, children: &Children, keep_provider: bool) -> Result<(), Error> {
        if let Found::Owned(consumer) = children.consumer() {
            if consumer.metadata.deletion_timestamp.is_none() {
                self.ctx.health.metrics.stop_began(&self.key);
                self.event(EventType::Normal, "Stopping", "Stop", "stopping the workload; the root filesystem is kept".into()).await;
            }
            return self.delete_pod(consumer, "running is false").await;
        }
        if !keep_provider && let Found::Owned(provider) = children.provider() {
            return self.delete_pod(provider, "its instance is being deleted and the workload pod is gone").await;
        }
        Ok(())
    }

    /// Publishes the Events the status change calls for ([`transition_notices`]).
    async fn report_transitions(&self, previous: Option<&StoppableContainerStatus>, status: &StoppableContainerStatus) {
        for notice in transition_notices(previous, status) {
            let type_ = if notice.warning { EventType::Warning } else { EventType::Normal };
            self.event(type_, &notice.reason, "Reconcile", notice.note).await;
        }
    }
}

/// One reconcile of one StoppableContainer.
pub async fn reconcile(sc: Arc<StoppableContainer>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.health.metrics.reconciled();
    let reconciler = Reconciler::new(&ctx, sc.clone())?;
    if sc.metadata.deletion_timestamp.is_some() {
        // The finalizer helper removes SC_FINALIZER as soon as its cleanup returns; deletion is
        // multi-step (pods terminate, the node plugin deletes data), so the steps run here and
        // the helper is reached only when they are all done.
        if let Some(wait) = reconciler.teardown().await? {
            return Ok(wait);
        }
    }
    let reconciler = &reconciler;
    finalizer(&reconciler.scs, SC_FINALIZER, sc, |event| async move {
        match event {
            finalizer::Event::Apply(_) => reconciler.apply().await,
            finalizer::Event::Cleanup(_) => Ok(Action::await_change()),
        }
    })
    .await
    .map_err(|error| Error::Finalizer(Box::new(error)))
}

/// What to do after a failed reconcile.
pub fn error_policy(sc: Arc<StoppableContainer>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(sc = %sc.name_any(), namespace = ?sc.namespace(), %error, "reconcile failed");
    ctx.health.metrics.failed(error.kind());
    Action::requeue(REQUEUE_AFTER_ERROR)
}

/// The pod a watch event concerns → the StoppableContainer to reconcile.
fn owner_of_pod(pod: Pod) -> Option<ObjectRef<StoppableContainer>> {
    let name = pod.labels().get(LABEL_INSTANCE)?.clone();
    Some(ObjectRef::new(&name).within(&pod.namespace()?))
}

/// Runs the controller until SIGTERM/SIGINT. `namespace` limits it to one namespace;
/// `report_namespace` is where the node plugins report deleted data (the release namespace).
pub async fn run(
    client: Client,
    settings: PodSettings,
    health: Arc<Health>,
    namespace: Option<String>,
    report_namespace: String,
    reporter: Reporter,
) {
    let (scs, instances, pods): (Api<StoppableContainer>, Api<StoppableContainerInstance>, Api<Pod>) = match &namespace {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)),
        None => (Api::all(client.clone()), Api::all(client.clone()), Api::all(client.clone())),
    };
    let managed_pods = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY_VALUE}"));
    // Readiness comes from the StoppableContainer watch itself: ready once its first full list
    // is in the cache. (A second task awaiting `Store::wait_until_ready` is not reliable: the
    // controller awaits the same one-shot signal, which wakes only one waiter, so /readyz could
    // stay 503 forever.)
    let (reader, writer) = reflector::store::<StoppableContainer>();
    let ready_flag = health.clone();
    let sc_objects = reflector(writer, watcher(scs, watcher::Config::default()))
        .inspect(move |event| {
            if matches!(event, Ok(watcher::Event::InitDone)) && !ready_flag.ready.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::info!("caches synced; ready");
            }
        })
        .applied_objects();
    // The release namespace's ConfigMaps, cached: the node plugins' usage ConfigMaps are read
    // from the cache. A node's data report wakes the deletion it releases at once, not at the
    // next requeue; a usage entry that changed wakes its SC's status.
    let reports: Api<ConfigMap> = Api::namespaced(client.clone(), &report_namespace);
    let (configmaps, configmaps_writer) = reflector::store::<ConfigMap>();
    let configmap_events = reflector(configmaps_writer, watcher(reports, watcher::Config::default())).default_backoff().touched_objects();
    let wakeups = UsageWakeups::default();
    let controller = Controller::for_stream(sc_objects, reader)
        .owns(instances, watcher::Config::default())
        .watches(pods, managed_pods, owner_of_pod)
        .watches_stream(configmap_events, move |configmap: ConfigMap| {
            let mut woken = wakeups.woken(&configmap);
            woken.extend(data_report::reported_stoppable_containers(configmap));
            woken
        })
        .shutdown_on_signal();
    let ctx =
        Arc::new(Context { recorder: Recorder::new(client.clone(), reporter), client, settings, health, report_namespace, configmaps });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(sc = %object.name, "reconciled"),
                // A failing watch (RBAC, an API server going away) is retried with backoff; say so,
                // or the operator silently works from a stale cache.
                Err(error @ kube::runtime::controller::Error::QueueError(_)) => tracing::warn!(%error, "watching failed; retrying"),
                // Failed reconciles are logged by `error_policy`; a vanished object is normal.
                Err(error) => tracing::debug!(%error, "reconcile loop reported an error"),
            }
        })
        .await;
    tracing::info!("controller stopped");
}
