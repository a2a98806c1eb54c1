//! The reconciler: the only part of the operator that talks to the API server, as the pipeline
//! fetch → plan → apply → report.
//!
//! - [`fetch`] reads the children (instance, consumer and provider pods) and the facts (the data
//!   node, its usage report from the cache);
//! - [`plan`] decides, purely, what to do as a list of steps ([`teardown`] for a deletion);
//! - [`apply`] carries the steps out, one request each, and plans again where a response decides
//!   the next step;
//! - [`report`] computes, purely, the status the reconcile ends with, written once.

mod apply;
mod error;
pub mod fetch;
pub mod plan;
pub mod report;
pub mod teardown;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolumeClaim, Pod};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::{self, ObjectRef, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use sc_api::consts::{LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY_VALUE, SC_FINALIZER, provider_pod_name};
use sc_api::{StoppableContainer, StoppableContainerInstance};

pub use self::error::{Cause, Error};
use crate::data_report;
use crate::http::Health;
use crate::rootfs_usage::UsageWakeups;
use crate::settings::PodSettings;

/// Requeue after an error.
const REQUEUE_AFTER_ERROR: Duration = Duration::from_secs(15);
/// Requeue after a conflict: the object changed since it was read, and a fresh read is all the
/// next attempt needs.
const REQUEUE_AFTER_CONFLICT: Duration = Duration::from_secs(1);

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

/// One StoppableContainer's reconcile, with its APIs at hand.
struct Reconciler<'a> {
    ctx: &'a Context,
    sc: Arc<StoppableContainer>,
    name: String,
    key: String,
    scs: Api<StoppableContainer>,
    instances: Api<StoppableContainerInstance>,
    pods: Api<Pod>,
    claims: Api<PersistentVolumeClaim>,
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
            claims: Api::namespaced(ctx.client.clone(), &namespace),
            nodes: Api::all(ctx.client.clone()),
            ctx,
            sc,
            name,
        })
    }

    fn provider_name(&self) -> String {
        provider_pod_name(&self.name)
    }

    /// Publishes an Event about the StoppableContainer; a failure is logged, never fatal.
    async fn event(&self, type_: EventType, reason: &str, action: &str, note: String) {
        let event = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
        if let Err(error) = self.ctx.recorder.publish(&event, &self.sc.object_ref(&())).await {
            tracing::warn!(sc = %self.key, %error, reason, "publishing an Event failed");
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

/// What to do after a failed reconcile: counted by the step that failed; a conflict is retried
/// at once (a fresh read is all it needs), anything else after a while.
pub fn error_policy(sc: Arc<StoppableContainer>, error: &Error, ctx: Arc<Context>) -> Action {
    let cause = error.cause();
    tracing::warn!(sc = %sc.name_any(), namespace = ?sc.namespace(), %error, step = error.kind(), ?cause, "reconcile failed");
    ctx.health.metrics.failed(error.kind());
    match cause {
        Cause::Conflict => Action::requeue(REQUEUE_AFTER_CONFLICT),
        Cause::Unreachable | Cause::Refused => Action::requeue(REQUEUE_AFTER_ERROR),
    }
}

/// The pod or claim a watch event concerns → the StoppableContainer to reconcile (by its
/// instance label: only a wake-up, the reconcile judges the object by its recorded UID).
fn labelled_for<K: Resource>(object: K) -> Option<ObjectRef<StoppableContainer>> {
    let name = object.labels().get(LABEL_INSTANCE)?.clone();
    Some(ObjectRef::new(&name).within(&object.namespace()?))
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
    let (scs, instances, pods, claims): (Api<StoppableContainer>, Api<StoppableContainerInstance>, Api<Pod>, Api<PersistentVolumeClaim>) =
        match &namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone()), Api::all(client.clone()), Api::all(client.clone())),
        };
    let managed = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY_VALUE}"));
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
        .watches(pods, managed.clone(), labelled_for)
        // spec.storage: the claim's phase and capacity reach the status as they change.
        .watches(claims, managed, labelled_for)
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
