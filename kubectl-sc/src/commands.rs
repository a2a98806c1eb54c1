//! The commands: each fetches what it needs, calls the pure builders/renderers, and talks to
//! the API server (or hands over to kubectl for the streaming commands).

use std::io::IsTerminal;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use sc_api::StoppableContainer;
use sc_api::consts::{CLI_FIELD_MANAGER, SC_KIND};

use crate::cli::{CreateArgs, DeleteArgs, ExecArgs, GlobalArgs, ListArgs, LogsArgs, ManifestFormat, OutputFormat, StatusArgs};
use crate::cluster::{Cluster, load_config};
use crate::error::CliError;
use crate::kubectl::{ExecRequest, KubectlTarget, LogsRequest, exec_args, logs_args, run_kubectl};
use crate::manifest::{CreateRequest, build_stoppable_container, render_manifest};
use crate::render::{EventView, ScView, created_claim_text, kept_claim_text, recent_events, render_objects, render_status, render_table};
use crate::validate::storage_from_flags;
use crate::wait::{Target, wait_for_deletion, wait_for_phase};

/// How many events `status` shows.
const STATUS_EVENT_LIMIT: usize = 10;

pub async fn create(global: &GlobalArgs, args: CreateArgs) -> Result<(), CliError> {
    let storage = storage_from_flags(args.storage_flags()).map_err(CliError::InvalidFlags)?;
    let cluster = if args.dry_run { None } else { Some(Cluster::connect(global).await?) };
    let namespace = match (&global.namespace, &cluster) {
        (Some(namespace), _) => namespace.clone(),
        (None, Some(cluster)) => cluster.default_namespace.clone(),
        // A dry run needs no cluster; the kubeconfig only supplies the namespace, and without a
        // usable one the manifest is printed for `default`, as kubectl does.
        (None, None) => load_config(global).await.map(|loaded| loaded.config.default_namespace).unwrap_or_else(|_| "default".to_owned()),
    };
    let request = CreateRequest {
        name: args.name,
        namespace,
        image: args.image,
        running: args.running,
        workdir: args.workdir,
        env: args.env,
        ports: args.ports,
        cpu_request: args.cpu,
        memory_request: args.memory,
        rootfs_size: args.size,
        storage,
        command: args.command,
    };
    let manifest = build_stoppable_container(&request);
    let Some(cluster) = cluster else {
        print!("{}", render_manifest(&manifest, args.output.unwrap_or(ManifestFormat::Yaml))?);
        return Ok(());
    };
    let params = PostParams { field_manager: Some(CLI_FIELD_MANAGER.to_owned()), ..PostParams::default() };
    let action = format!("create {SC_KIND} {:?}", request.name);
    let created = cluster
        .stoppable_containers(&request.namespace)
        .create(&params, &manifest)
        .await
        .map_err(|error| cluster.explain(error, &action, &request.namespace, Some(&request.name)))?;
    if let Some(format) = args.output {
        print!("{}", render_manifest(&created, format)?);
        return Ok(());
    }
    let (name, namespace) = (&request.name, &request.namespace);
    println!("{SC_KIND} {name:?} created in namespace {namespace:?}");
    if let Some(storage) = &request.storage {
        println!("{}", created_claim_text(name, storage));
    }
    if request.running {
        println!("It is starting; follow it with: kubectl sc status {name} -n {namespace}");
    } else {
        println!("It is stopped; start it with: kubectl sc start {name} -n {namespace} --wait");
    }
    Ok(())
}

pub async fn list(global: &GlobalArgs, args: ListArgs) -> Result<(), CliError> {
    let cluster = Cluster::connect(global).await?;
    let namespace = cluster.namespace(global);
    let (api, scope) = if global.all_namespaces {
        (cluster.all_stoppable_containers(), "all namespaces".to_owned())
    } else {
        (cluster.stoppable_containers(&namespace), format!("namespace {namespace:?}"))
    };
    let action = format!("list {SC_KIND}s in {scope}");
    let objects = api.list(&ListParams::default()).await.map_err(|error| cluster.explain(error, &action, &namespace, None))?;
    let mut objects = objects.items;
    objects.sort_by(|a, b| (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name)));
    match args.output {
        OutputFormat::Table if objects.is_empty() => eprintln!("No {SC_KIND}s found in {scope}."),
        OutputFormat::Table => {
            let views: Vec<ScView> = objects.iter().map(ScView::from_object).collect();
            print!("{}", render_table(&views, global.all_namespaces, Timestamp::now()));
        }
        format => print!("{}", render_objects(&objects, false, format)?),
    }
    Ok(())
}

pub async fn status(global: &GlobalArgs, args: StatusArgs) -> Result<(), CliError> {
    let cluster = Cluster::connect(global).await?;
    let namespace = cluster.namespace(global);
    let object = get(&cluster, &namespace, &args.name).await?;
    if args.output != OutputFormat::Table {
        print!("{}", render_objects(std::slice::from_ref(&object), true, args.output)?);
        return Ok(());
    }
    let events = match object_events(&cluster, &namespace, &object).await {
        Ok(events) => events,
        Err(error) => {
            // Events are a bonus: without permission to list them, the status is still useful.
            eprintln!("warning: cannot list the events of {SC_KIND} {:?}: {error}", args.name);
            Vec::new()
        }
    };
    print!("{}", render_status(&ScView::from_object(&object), &recent_events(events, STATUS_EVENT_LIMIT), Timestamp::now()));
    Ok(())
}

async fn object_events(cluster: &Cluster, namespace: &str, object: &StoppableContainer) -> Result<Vec<EventView>, CliError> {
    let Some(uid) = &object.metadata.uid else {
        return Ok(Vec::new());
    };
    let api: kube::Api<Event> = kube::Api::namespaced(cluster.client.clone(), namespace);
    let params = ListParams::default().fields(&format!("involvedObject.uid={uid}"));
    let events = api.list(&params).await.map_err(|error| cluster.explain(error, "list events", namespace, None))?;
    Ok(events.items.iter().map(EventView::from_event).collect())
}

async fn get(cluster: &Cluster, namespace: &str, name: &str) -> Result<StoppableContainer, CliError> {
    let action = format!("get {SC_KIND} {name:?}");
    cluster.stoppable_containers(namespace).get(name).await.map_err(|error| cluster.explain(error, &action, namespace, Some(name)))
}

/// Sets `spec.running` with a merge patch (no read-modify-write, so no conflict with the
/// operator's writes) unless it already has that value. Returns the generation to wait for.
async fn set_running(cluster: &Cluster, namespace: &str, name: &str, target: Target) -> Result<Option<i64>, CliError> {
    let current = get(cluster, namespace, name).await?;
    if current.spec.running == target.wants_running() {
        println!("{SC_KIND} {name:?} is already {}", target.describe());
        return Ok(current.metadata.generation);
    }
    let patch = Patch::Merge(serde_json::json!({ "spec": { "running": target.wants_running() } }));
    let params = PatchParams { field_manager: Some(CLI_FIELD_MANAGER.to_owned()), ..PatchParams::default() };
    let action = format!("set spec.running of {SC_KIND} {name:?}");
    let patched = cluster
        .stoppable_containers(namespace)
        .patch(name, &params, &patch)
        .await
        .map_err(|error| cluster.explain(error, &action, namespace, Some(name)))?;
    let verb = if target.wants_running() { "starting" } else { "stopping" };
    println!("{SC_KIND} {name:?} {verb}...");
    Ok(patched.metadata.generation)
}

/// `start`/`stop`: set the switch, then optionally wait for the matching phase.
pub async fn lifecycle(global: &GlobalArgs, name: &str, target: Target, wait: bool, timeout: std::time::Duration) -> Result<(), CliError> {
    let cluster = Cluster::connect(global).await?;
    let namespace = cluster.namespace(global);
    let generation = set_running(&cluster, &namespace, name, target).await?;
    if wait {
        let reached = wait_for_phase(&cluster, &namespace, name, target, generation, timeout).await?;
        report_reached(name, target, &reached);
    }
    Ok(())
}

/// `restart`: stop and always wait for it (starting before the stop finished would let the
/// operator see no change at all), then start and optionally wait.
pub async fn restart(
    global: &GlobalArgs,
    name: &str,
    wait: bool,
    start_timeout: std::time::Duration,
    stop_timeout: std::time::Duration,
) -> Result<(), CliError> {
    let cluster = Cluster::connect(global).await?;
    let namespace = cluster.namespace(global);
    let stop_generation = set_running(&cluster, &namespace, name, Target::Stopped).await?;
    let stopped = wait_for_phase(&cluster, &namespace, name, Target::Stopped, stop_generation, stop_timeout).await?;
    report_reached(name, Target::Stopped, &stopped);
    let start_generation = set_running(&cluster, &namespace, name, Target::Running).await?;
    if wait {
        let running = wait_for_phase(&cluster, &namespace, name, Target::Running, start_generation, start_timeout).await?;
        report_reached(name, Target::Running, &running);
    }
    Ok(())
}

fn report_reached(name: &str, target: Target, object: &StoppableContainer) {
    let node = object.status.as_ref().and_then(|status| status.node_name.as_deref()).filter(|node| !node.is_empty());
    match (target, node) {
        (Target::Running, Some(node)) => println!("{SC_KIND} {name:?} is running on node {node}"),
        _ => println!("{SC_KIND} {name:?} is {}", target.describe()),
    }
}

/// The consumer pod of a running StoppableContainer (for exec and logs).
async fn consumer_pod(cluster: &Cluster, namespace: &str, name: &str, action: &'static str) -> Result<String, CliError> {
    let object = get(cluster, namespace, name).await?;
    let pod_in_status = object.status.as_ref().and_then(|status| status.consumer_pod_name.clone()).filter(|pod| !pod.is_empty());
    if !object.spec.running && pod_in_status.is_none() {
        return Err(CliError::NotRunning { name: name.to_owned(), namespace: namespace.to_owned(), action });
    }
    // The consumer pod is named like the StoppableContainer; the status says so once it exists.
    Ok(pod_in_status.unwrap_or_else(|| name.to_owned()))
}

fn kubectl_target(global: &GlobalArgs, namespace: String) -> KubectlTarget {
    KubectlTarget { kubeconfig: global.kubeconfig.clone(), context: global.context.clone(), namespace }
}

pub async fn exec(global: &GlobalArgs, args: ExecArgs) -> Result<(), CliError> {
    let cluster = Cluster::connect(global).await?;
    let namespace = cluster.namespace(global);
    let pod = consumer_pod(&cluster, &namespace, &args.name, "exec into").await?;
    let request = ExecRequest { pod, container: args.container, stdin: args.stdin, tty: args.tty, command: args.command }
        .with_defaults(std::io::stdin().is_terminal());
    run_kubectl(&exec_args(&kubectl_target(global, namespace), &request), "exec").await
}

pub async fn logs(global: &GlobalArgs, args: LogsArgs) -> Result<(), CliError> {
    let cluster = Cluster::connect(global).await?;
    let namespace = cluster.namespace(global);
    let pod = consumer_pod(&cluster, &namespace, &args.name, "read logs from").await?;
    let request = LogsRequest {
        pod,
        container: args.container,
        follow: args.follow,
        tail: args.tail,
        previous: args.previous,
        timestamps: args.timestamps,
    };
    run_kubectl(&logs_args(&kubectl_target(global, namespace), &request), "logs").await
}

pub async fn delete(global: &GlobalArgs, args: DeleteArgs) -> Result<(), CliError> {
    let cluster = Cluster::connect(global).await?;
    let namespace = cluster.namespace(global);
    let name = &args.name;
    let params = DeleteParams { grace_period_seconds: args.force.then_some(0), ..DeleteParams::default() };
    let action = format!("delete {SC_KIND} {name:?}");
    let outcome = cluster
        .stoppable_containers(&namespace)
        .delete(name, &params)
        .await
        .map_err(|error| cluster.explain(error, &action, &namespace, Some(name)))?;
    // The object as the server deleted it says whether its claim stays. API servers answer the
    // deletion of a custom object with the object; a `Status` answer carries no spec to read.
    let kept_claim = outcome.as_ref().left().and_then(kept_claim_text);
    if outcome.is_right() {
        // The server removed it at once (no finalizers were left).
        println!("{SC_KIND} {name:?} deleted");
        return Ok(());
    }
    if !args.wait {
        println!("{SC_KIND} {name:?} is being deleted (its pods and root filesystem are removed first)");
    } else {
        println!("{SC_KIND} {name:?} is being deleted; waiting until its pods and root filesystem are gone...");
        wait_for_deletion(&cluster, &namespace, name, args.timeout).await?;
        println!("{SC_KIND} {name:?} deleted");
    }
    if let Some(kept_claim) = kept_claim {
        println!("{kept_claim}");
    }
    Ok(())
}
