//! Pure rendering of what the commands print: the `list` table, the `status` text, object lists
//! as JSON/YAML, ages. Every function takes "now" as an argument so the output is reproducible.

pub mod diff;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use sc_api::lifecycle::condition;
use sc_api::stoppable_container::ImageStatus;
use sc_api::storage::{ClaimRetention, StorageSpec, StorageStatus, claim_name};
use sc_api::{Phase, RootfsStatus, StoppableContainer};

use crate::cli::OutputFormat;
use crate::error::CliError;

/// What `list` and `status` show of one StoppableContainer.
#[derive(Clone, Debug, PartialEq)]
pub struct ScView {
    pub name: String,
    pub namespace: String,
    pub running: bool,
    pub phase: Option<Phase>,
    pub message: Option<String>,
    pub instance: Option<String>,
    pub node: Option<String>,
    pub data_node: Option<String>,
    /// `spec.rootfsSize` as written; None: the cluster's default.
    pub rootfs_size: Option<String>,
    /// The claim that holds the root filesystem; None: node-local.
    pub storage: Option<StorageView>,
    /// `status.rootfs`: the root filesystem's use as its data node last reported it.
    pub rootfs_use: Option<RootfsStatus>,
    /// `status.image`: the image's config as the data node reported it, and the command it makes.
    pub image: Option<ImageStatus>,
    pub created: Option<Timestamp>,
    pub conditions: Vec<ConditionView>,
}

/// What `spec.storage` asks for and what `status.storage` reports of the claim. Either one
/// makes the root filesystem a claim's: a status without the spec is a claim whose spec.storage
/// was removed (which the operator refuses), still where the data is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StorageView {
    pub requested: Option<StorageSpec>,
    pub reported: Option<StorageStatus>,
}

impl StorageView {
    /// The claim's name: as the operator reported it, else the name it gives every claim.
    pub fn claim_name(&self, sc_name: &str) -> String {
        self.reported
            .as_ref()
            .map(|reported| reported.claim.claim_name.clone())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| claim_name(sc_name))
    }
}

/// One status condition.
#[derive(Clone, Debug, PartialEq)]
pub struct ConditionView {
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// One event about the StoppableContainer.
#[derive(Clone, Debug, PartialEq)]
pub struct EventView {
    pub type_: String,
    pub reason: String,
    pub last_seen: Option<Timestamp>,
    pub count: i32,
    pub message: String,
}

impl ScView {
    pub fn from_object(object: &StoppableContainer) -> Self {
        let status = object.status.as_ref();
        Self {
            name: object.metadata.name.clone().unwrap_or_default(),
            namespace: object.metadata.namespace.clone().unwrap_or_default(),
            running: object.spec.running,
            phase: status.and_then(|status| status.phase),
            message: status.and_then(|status| status.message.clone()),
            instance: status.and_then(|status| status.instance_name.clone()),
            node: status.and_then(|status| status.node_name.clone()),
            data_node: status.and_then(|status| status.data_node_name.clone()),
            rootfs_size: object.spec.rootfs_size.as_ref().map(|size| size.0.clone()),
            storage: match (&object.spec.storage, status.and_then(|status| status.storage.as_ref())) {
                (None, None) => None,
                (requested, reported) => Some(StorageView { requested: requested.clone(), reported: reported.cloned() }),
            },
            rootfs_use: status.and_then(|status| status.rootfs.clone()),
            image: status.and_then(|status| status.image.clone()),
            created: object.metadata.creation_timestamp.as_ref().map(|time| time.0),
            conditions: status
                .map(|status| {
                    status
                        .conditions
                        .iter()
                        .map(|condition| ConditionView {
                            type_: condition.type_.clone(),
                            status: condition.status.clone(),
                            reason: condition.reason.clone(),
                            message: condition.message.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The phase as shown to users: an SC the operator has not looked at yet is `Pending`.
    pub fn phase_text(&self) -> &'static str {
        self.phase.unwrap_or(Phase::Pending).as_str()
    }
}

impl EventView {
    pub fn from_event(event: &Event) -> Self {
        // Events written with the events.k8s.io API fill eventTime/series instead of
        // lastTimestamp/count; take whichever the writer used.
        let last_seen = event
            .last_timestamp
            .as_ref()
            .map(|time| time.0)
            .or_else(|| event.event_time.as_ref().map(|time| time.0))
            .or_else(|| event.first_timestamp.as_ref().map(|time| time.0));
        Self {
            type_: event.type_.clone().unwrap_or_default(),
            reason: event.reason.clone().unwrap_or_default(),
            last_seen,
            count: event.count.or_else(|| event.series.as_ref().and_then(|series| series.count)).unwrap_or(1),
            message: event.message.clone().unwrap_or_default().trim_end().to_owned(),
        }
    }
}

/// kubectl-style age: `Ns` under a minute, `Nm` under an hour, `Nh` under a day, then `Nd`.
pub fn format_age(created: Option<Timestamp>, now: Timestamp) -> String {
    let Some(created) = created else {
        return "<unknown>".to_owned();
    };
    // Clock skew between the API server and this machine can make a fresh object look future.
    let seconds = now.duration_since(created).as_secs().max(0);
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86_400 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// A byte count in the largest binary unit it reaches, with one decimal when it is not whole:
/// `512B`, `1.2Gi`, `10Gi`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Rounded to a tenth first, so that 1023.96Mi shows as 1Gi, not 1024Mi.
    while (value * 10.0).round() / 10.0 >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let tenths = (value * 10.0).round() / 10.0;
    if tenths.fract() == 0.0 { format!("{tenths:.0}{}", UNITS[unit]) } else { format!("{tenths:.1}{}", UNITS[unit]) }
}

/// The `Rootfs:` line of `status`: the use against the size as the data node last measured it
/// and how long ago; without a report, the size asked for (a node-local one: on a claim,
/// `rootfsSize` does not apply and the claim's lines show its size).
pub fn rootfs_use_text(view: &ScView, now: Timestamp) -> String {
    let Some(rootfs) = &view.rootfs_use else {
        return match (&view.rootfs_size, &view.storage) {
            (Some(size), None) => format!("{size}, no use reported yet"),
            _ => "no use reported yet".to_owned(),
        };
    };
    let observed =
        rootfs.observed_time.as_ref().map(|time| format!(", observed {} ago", format_age(Some(time.0), now))).unwrap_or_default();
    match (rootfs.size_bytes, rootfs.used_bytes) {
        (Some(size), Some(used)) => {
            let percent = if size == 0 { 0 } else { (u128::from(used) * 100 + u128::from(size) / 2) / u128::from(size) };
            format!("{} of {} used ({percent}%){observed}", format_bytes(used), format_bytes(size))
        }
        (Some(size), None) => format!("{}{observed}", format_bytes(size)),
        (None, _) => format!("no size limit (made before size limits){observed}"),
    }
}

/// The `Storage:` lines of `status`: where the root filesystem is. Node-local: its data node
/// (set at the first start, which every later start is pinned to). On a claim: the claim's
/// name and phase, its size as requested and as bound, its class, and its fate at deletion.
pub fn storage_fields(view: &ScView) -> Vec<(&'static str, String)> {
    let Some(storage) = &view.storage else {
        let place = match view.data_node.as_deref().filter(|node| !node.is_empty()) {
            Some(node) => format!("node-local on {node}"),
            None => "node-local (the first start chooses the node)".to_owned(),
        };
        return vec![("Storage:", place)];
    };
    let requested = storage.requested.as_ref();
    let reported = storage.reported.as_ref();
    let phase = match reported {
        None => "not created yet".to_owned(),
        Some(reported) => reported.phase.clone().filter(|phase| !phase.is_empty()).unwrap_or_else(|| "phase not reported".to_owned()),
    };
    let requested_size = requested.map_or_else(|| "size not in spec.storage".to_owned(), |spec| format!("{} requested", spec.size.0));
    let capacity = match reported.and_then(|reported| reported.capacity.as_ref()) {
        Some(capacity) => format!("{} capacity", capacity.0),
        None => "no capacity yet (not bound)".to_owned(),
    };
    let class = reported
        .and_then(|reported| reported.storage_class_name.clone())
        .or_else(|| requested.and_then(|spec| spec.storage_class_name.clone()))
        .unwrap_or_else(|| "the cluster's default class".to_owned());
    let claim = storage.claim_name(&view.name);
    let mut fields = vec![
        ("Storage:", format!("PersistentVolumeClaim {claim}, {phase}")),
        ("Claim size:", format!("{requested_size}, {capacity}")),
        ("Claim class:", class),
    ];
    if let Some(spec) = requested {
        let fate = match spec.when_deleted.unwrap_or_default() {
            ClaimRetention::Delete => "Delete (the claim and its data are deleted with the StoppableContainer)",
            ClaimRetention::Retain => "Retain (the claim and its data are kept when the StoppableContainer is deleted)",
        };
        fields.push(("When deleted:", fate.to_owned()));
    }
    fields
}

/// The `STORAGE` cell of `list`: `node-local`, or `claim:<requested size>`.
pub fn storage_cell(view: &ScView) -> String {
    match &view.storage {
        None => "node-local".to_owned(),
        Some(StorageView { requested: Some(spec), .. }) => format!("claim:{}", spec.size.0),
        Some(StorageView { requested: None, .. }) => "claim".to_owned(),
    }
}

/// What `create` says of the claim it asked for.
pub fn created_claim_text(sc_name: &str, storage: &StorageSpec) -> String {
    let class = storage.storage_class_name.as_deref().map_or_else(|| "the default class".to_owned(), |class| format!("class {class}"));
    let fate = match storage.when_deleted.unwrap_or_default() {
        ClaimRetention::Delete => "deleted with it",
        ClaimRetention::Retain => "kept when it is deleted",
    };
    format!("Its root filesystem is on the PersistentVolumeClaim {} ({}, {class}), {fate}", claim_name(sc_name), storage.size.0)
}

/// What `delete` says when the deleted StoppableContainer's claim stays (`whenDeleted:
/// Retain`): its name, and how to delete it once its data is no longer wanted. None otherwise.
pub fn kept_claim_text(object: &StoppableContainer) -> Option<String> {
    let storage = object.spec.storage.as_ref()?;
    if storage.when_deleted.unwrap_or_default() != ClaimRetention::Retain {
        return None;
    }
    let name = object.metadata.name.as_deref().unwrap_or_default();
    let namespace = object.metadata.namespace.as_deref().unwrap_or_default();
    let reported = object.status.as_ref().and_then(|status| status.storage.clone());
    let claim = StorageView { requested: None, reported }.claim_name(name);
    Some(format!(
        "Its PersistentVolumeClaim {claim:?} is kept, with the data (whenDeleted: Retain); no new StoppableContainer adopts it. \
         Delete it when the data is no longer wanted: kubectl delete pvc {claim} -n {namespace}"
    ))
}

/// One word of an argv as a shell would need it typed: bare when it is made only of characters
/// no shell treats specially, else in single quotes (a `'` inside as `'\''`).
pub fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !word.is_empty() && word.chars().all(plain) { word.to_owned() } else { format!("'{}'", word.replace('\'', "'\\''")) }
}

/// The `Image:`, `Command:`, `Image user:` and `Image workdir:` lines of `status`: what the image
/// defines and what the workload runs, or why that is not known.
pub fn image_fields(view: &ScView) -> Vec<(&'static str, String)> {
    let Some(image) = &view.image else {
        return vec![(
            "Image:",
            "config not reported yet (the data node reports it when the consumer pod mounts the root filesystem)".to_owned(),
        )];
    };
    let image_config = view.conditions.iter().find(|condition| condition.type_ == condition::IMAGE_CONFIG);
    let command = match &image.command {
        Some(argv) => argv.iter().map(|word| shell_word(word)).collect::<Vec<_>>().join(" "),
        None => match image_config.filter(|condition| condition.status == "False") {
            Some(condition) => format!("none: {} (see the ImageConfig condition)", condition.reason),
            None => "not evaluated (see the ImageConfig condition)".to_owned(),
        },
    };
    let (user, working_dir) = match &image.unavailable {
        Some(_) => ("unknown".to_owned(), "unknown".to_owned()),
        None => (
            image.user.clone().unwrap_or_else(|| "root (no USER)".to_owned()),
            image.working_dir.clone().unwrap_or_else(|| "/ (no WORKDIR)".to_owned()),
        ),
    };
    let reference = match &image.unavailable {
        Some(why) => format!("{} (the container runtime gave no config: {why})", image.image_ref),
        None => image.image_ref.clone(),
    };
    vec![("Image:", reference), ("Command:", command), ("Image user:", user), ("Image workdir:", working_dir)]
}

/// The `list` table: `NAME RUNNING PHASE NODE STORAGE AGE`, with `NAMESPACE` first when listing
/// every namespace.
pub fn render_table(views: &[ScView], with_namespace: bool, now: Timestamp) -> String {
    let mut header = vec!["NAME", "RUNNING", "PHASE", "NODE", "STORAGE", "AGE"];
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    let rows = views.iter().map(|view| {
        let mut row = vec![
            view.name.clone(),
            if view.running { "Yes" } else { "No" }.to_owned(),
            view.phase_text().to_owned(),
            view.node.clone().filter(|node| !node.is_empty()).unwrap_or_else(|| "<none>".to_owned()),
            storage_cell(view),
            format_age(view.created, now),
        ];
        if with_namespace {
            row.insert(0, view.namespace.clone());
        }
        row
    });
    let header = header.into_iter().map(str::to_owned).collect();
    align_columns(std::iter::once(header).chain(rows).collect())
}

/// Left-aligns columns separated by three spaces (what kubectl's tabwriter prints).
fn align_columns(rows: Vec<Vec<String>>) -> String {
    let column_count = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..column_count)
        .map(|column| rows.iter().filter_map(|row| row.get(column)).map(|cell| cell.chars().count()).max().unwrap_or(0))
        .collect();
    let mut output = String::new();
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[column]));
            }
        }
        output.push_str(line.trim_end());
        output.push('\n');
    }
    output
}

/// The default `status` text: aligned fields, conditions, then the most recent events.
pub fn render_status(view: &ScView, events: &[EventView], now: Timestamp) -> String {
    let dash = |value: &Option<String>| value.clone().filter(|text| !text.is_empty()).unwrap_or_else(|| "-".to_owned());
    let mut fields = vec![
        ("Name:", view.name.clone()),
        ("Namespace:", view.namespace.clone()),
        ("Running:", view.running.to_string()),
        ("Phase:", view.phase_text().to_owned()),
        ("Message:", dash(&view.message)),
        ("Instance:", dash(&view.instance)),
        ("Node:", dash(&view.node)),
    ];
    // Where the data lives matters once stopped (a node-local one's next start is pinned there).
    fields.extend(storage_fields(view));
    if view.storage.is_none() {
        // The operator resolves an unset size against the cluster's default, which only it knows.
        fields.push(("Rootfs size:", view.rootfs_size.clone().unwrap_or_else(|| "cluster default".to_owned())));
    }
    fields.push(("Rootfs:", rootfs_use_text(view, now)));
    fields.extend(image_fields(view));
    fields.push(("Age:", format_age(view.created, now)));
    let label_width = fields.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    let mut output = String::new();
    for (label, value) in &fields {
        output.push_str(&format!("{label:<label_width$}  {value}\n"));
    }
    output.push_str("Conditions:");
    if view.conditions.is_empty() {
        output.push_str(" <none>\n");
    } else {
        output.push('\n');
        for condition in &view.conditions {
            let mut line = format!("  {}: {}", condition.type_, condition.status);
            if !condition.reason.is_empty() {
                line.push_str(&format!(" ({})", condition.reason));
            }
            if !condition.message.is_empty() {
                line.push(' ');
                line.push_str(&condition.message);
            }
            output.push_str(&line);
            output.push('\n');
        }
    }
    output.push_str("Events:");
    if events.is_empty() {
        output.push_str(" <none>\n");
        return output;
    }
    output.push('\n');
    let mut rows = vec![vec!["TYPE".to_owned(), "REASON".to_owned(), "AGE".to_owned(), "MESSAGE".to_owned()]];
    for event in events {
        let age = match event.count {
            count if count > 1 => format!("{} (x{count})", format_age(event.last_seen, now)),
            _ => format_age(event.last_seen, now),
        };
        rows.push(vec![event.type_.clone(), event.reason.clone(), age, event.message.clone()]);
    }
    for line in align_columns(rows).lines() {
        output.push_str("  ");
        output.push_str(line);
        output.push('\n');
    }
    output
}

/// The events to show: the `limit` most recent, oldest first (as `kubectl describe` orders them).
pub fn recent_events(mut events: Vec<EventView>, limit: usize) -> Vec<EventView> {
    events.sort_by_key(|event| event.last_seen);
    let skip = events.len().saturating_sub(limit);
    events.split_off(skip)
}

/// Serializes objects for `-o json|yaml`: one object as itself, several as a `v1/List` (what
/// `kubectl get -o` prints). `managedFields` are dropped, as kubectl does by default.
pub fn render_objects(objects: &[StoppableContainer], single: bool, format: OutputFormat) -> Result<String, CliError> {
    let mut values = objects
        .iter()
        .map(|object| {
            let mut object = object.clone();
            object.metadata.managed_fields = None;
            serde_json::to_value(object)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let document = if single && values.len() == 1 {
        values.remove(0)
    } else {
        serde_json::json!({ "apiVersion": "v1", "kind": "List", "metadata": { "resourceVersion": "" }, "items": values })
    };
    match format {
        OutputFormat::Json => Ok(serde_json::to_string_pretty(&document)? + "\n"),
        OutputFormat::Yaml => Ok(serde_yaml::to_string(&document)?),
        OutputFormat::Table => Err(CliError::Internal("render_objects called for the table format".to_owned())),
    }
}

#[cfg(test)]
mod tests;
