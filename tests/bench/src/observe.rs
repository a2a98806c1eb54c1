//! What the benchmark knows of the cluster: one watch per kind, a current view, and the history
//! of every change with the wall-clock time the benchmark saw it. Waiting on the watch instead of
//! polling gives millisecond resolution to every latency, for the product and the baseline alike.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::BenchError;

/// The objects of one kind, by name, as the watch last delivered them.
pub type Objects<K> = HashMap<String, Arc<K>>;

/// One change delivered by the watch: the object as it became, or None once deleted.
pub struct Seen<K> {
    pub at: SystemTime,
    pub name: String,
    pub object: Option<Arc<K>>,
}

struct State<K> {
    objects: Objects<K>,
    /// Names listed since the watch (re)started; the rest are gone once the list is complete.
    relisting: Option<HashSet<String>>,
    history: Vec<Seen<K>>,
    last_change: SystemTime,
    synced: bool,
}

pub struct Observer<K> {
    state: Arc<Mutex<State<K>>>,
    changes: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl<K> Drop for Observer<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<K> Observer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Starts a watch of every object of the API's scope; returns once the first list is complete.
    pub async fn start(api: Api<K>) -> Result<Self, BenchError> {
        let state = Arc::new(Mutex::new(State {
            objects: HashMap::new(),
            relisting: None,
            history: Vec::new(),
            last_change: SystemTime::now(),
            synced: false,
        }));
        let (notify, changes) = watch::channel(0_u64);
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        let task = tokio::spawn({
            let state = Arc::clone(&state);
            async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(event) => {
                            apply(&mut lock(&state), event, SystemTime::now());
                            notify.send_modify(|count| *count += 1);
                        }
                        // The watcher resumes by itself (with backoff); the waits time out if it cannot.
                        Err(error) => eprintln!("sc-bench: watch error (retrying): {error}"),
                    }
                }
            }
        });
        let observer = Self { state, changes, task };
        observer.wait("the first list of the watch", Duration::from_secs(60), |_| true).await?;
        Ok(observer)
    }

    pub fn get(&self, name: &str) -> Option<Arc<K>> {
        lock(&self.state).objects.get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<K>> {
        lock(&self.state).objects.values().cloned().collect()
    }

    /// Waits until `holds` is true of the current objects; returns when the change that made it
    /// true was seen (or now, if it already held).
    pub async fn wait(&self, what: &str, timeout: Duration, holds: impl Fn(&Objects<K>) -> bool) -> Result<SystemTime, BenchError> {
        let mut changes = self.changes.clone();
        let began = SystemTime::now();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            {
                let state = lock(&self.state);
                if state.synced && holds(&state.objects) {
                    return Ok(state.last_change.max(began));
                }
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_closed)) => return Err(BenchError::WatchEnded { what: what.to_owned() }),
                Err(_elapsed) => return Err(BenchError::Timeout { what: what.to_owned(), after: timeout }),
            }
        }
    }

    /// When the named object first satisfied `holds` at or after `since`, per the history.
    pub fn first_seen(&self, name: &str, since: SystemTime, holds: impl Fn(Option<&K>) -> bool) -> Option<SystemTime> {
        lock(&self.state)
            .history
            .iter()
            .filter(|seen| seen.at >= since && seen.name == name)
            .find(|seen| holds(seen.object.as_deref()))
            .map(|seen| seen.at)
    }

    /// Forgets the history (the sections that need it clear it first, to bound memory).
    pub fn clear_history(&self) {
        lock(&self.state).history.clear();
    }
}

fn lock<K>(state: &Mutex<State<K>>) -> MutexGuard<'_, State<K>> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn apply<K: Resource>(state: &mut State<K>, event: Event<K>, at: SystemTime) {
    let record = |state: &mut State<K>, name: String, object: Option<Arc<K>>| {
        state.history.push(Seen { at, name, object });
        state.last_change = at;
    };
    match event {
        Event::Init => state.relisting = Some(HashSet::new()),
        Event::InitApply(object) | Event::Apply(object) => {
            let name = object.name_any();
            if let Some(listed) = state.relisting.as_mut() {
                listed.insert(name.clone());
            }
            let object = Arc::new(object);
            state.objects.insert(name.clone(), Arc::clone(&object));
            record(state, name, Some(object));
        }
        Event::Delete(object) => {
            let name = object.name_any();
            state.objects.remove(&name);
            record(state, name, None);
        }
        Event::InitDone => {
            if let Some(listed) = state.relisting.take() {
                let gone: Vec<String> = state.objects.keys().filter(|name| !listed.contains(*name)).cloned().collect();
                for name in gone {
                    state.objects.remove(&name);
                    record(state, name, None);
                }
            }
            state.synced = true;
            state.last_change = at;
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ObjectMeta;

    use super::*;

    fn pod(name: &str) -> Pod {
        Pod { metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() }, ..Pod::default() }
    }

    fn empty() -> State<Pod> {
        State { objects: HashMap::new(), relisting: None, history: Vec::new(), last_change: SystemTime::UNIX_EPOCH, synced: false }
    }

    #[test]
    fn a_relist_forgets_objects_deleted_while_the_watch_was_down() {
        let mut state = empty();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1);
        for event in [Event::Init, Event::InitApply(pod("a")), Event::InitApply(pod("b")), Event::InitDone] {
            apply(&mut state, event, at);
        }
        assert!(state.synced);
        let later = at + Duration::from_secs(1);
        for event in [Event::Init, Event::InitApply(pod("b")), Event::InitDone] {
            apply(&mut state, event, later);
        }
        assert_eq!(state.objects.keys().collect::<Vec<_>>(), vec!["b"]);
        let last = state.history.last().expect("the deletion is in the history");
        assert_eq!((last.name.as_str(), last.object.is_none(), last.at), ("a", true, later));
    }

    #[test]
    fn deletions_and_changes_are_recorded_in_order() {
        let mut state = empty();
        let at = |seconds| SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);
        apply(&mut state, Event::Apply(pod("a")), at(1));
        apply(&mut state, Event::Delete(pod("a")), at(2));
        let seen: Vec<(&str, bool, SystemTime)> = state.history.iter().map(|s| (s.name.as_str(), s.object.is_some(), s.at)).collect();
        assert_eq!(seen, vec![("a", true, at(1)), ("a", false, at(2))]);
        assert!(state.objects.is_empty());
        assert_eq!(state.last_change, at(2));
    }
}
