//! The node's side, read from /proc: the benchmark runs on the node itself, as root, so it sees
//! the processes and mounts kubelet and the node plugin create. Parsers are pure; the reads are
//! the thin functions at the bottom.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::error::{BenchError, host};

/// The dirty and under-writeback page cache of /proc/meminfo, in KiB: what the disk still has to
/// write for earlier work.
pub fn unwritten_kib(meminfo: &str) -> Option<u64> {
    Some(status_kib(meminfo, "Dirty")? + status_kib(meminfo, "Writeback")?)
}

/// A `Vm*:` figure of /proc/<pid>/status, in KiB.
pub fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// Field 22 of /proc/<pid>/stat: the start time in clock ticks since boot. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its last ')'.
pub fn stat_start_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // after_name starts with field 3 (state); field 22 is the 20th from there.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// `btime` of /proc/stat: the boot time in seconds since the epoch.
pub fn boot_time_seconds(stat: &str) -> Option<u64> {
    stat.lines().find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

/// Whether a /proc/<pid>/cgroup names the container (its ID is in the cgroup path).
pub fn cgroup_names_container(cgroup: &str, container_id: &str) -> bool {
    !container_id.is_empty() && cgroup.lines().any(|line| line.contains(container_id))
}

/// The mount points the product created that are still mounted on the node: the tmpfs at each
/// publish target (source `stoppablecontainer`) and every overlay or bind whose mount point or
/// root lies under the data root. Fields per proc(5): 4 = root, 5 = mount point, then after " - ":
/// fs type and source.
pub fn product_mounts(mountinfo: &str, data_root: &str) -> Vec<String> {
    let under_data_root = |path: &str| path == data_root || path.strip_prefix(data_root).is_some_and(|rest| rest.starts_with('/'));
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let (root, mount_point) = (*fields.get(3)?, *fields.get(4)?);
            let mut after = after.split(' ');
            let (fs_type, source) = (after.next()?, after.next()?);
            let ours = source == "stoppablecontainer"
                || under_data_root(root) && fs_type != "overlay" && mount_point.contains("kubernetes.io~csi")
                || under_data_root(mount_point)
                || fs_type == "overlay" && after.next().is_some_and(|options| options.contains(&format!("upperdir={data_root}/")));
            ours.then(|| format!("{fs_type} at {mount_point}"))
        })
        .collect()
}

// --- reads and writes (the thin edge) ------------------------------------------------------

fn read(path: &str) -> Result<String, BenchError> {
    fs::read_to_string(path).map_err(host("reading", path))
}

/// Empties the page cache, dentries and inodes, after writing back dirty pages, so that every
/// I/O measurement starts cold.
pub fn drop_caches() -> Result<(), BenchError> {
    nix::unistd::sync();
    fs::write("/proc/sys/vm/drop_caches", "3\n").map_err(host("writing", "/proc/sys/vm/drop_caches"))
}

/// At most this much may still wait to be written when a measurement starts.
const SETTLED_KIB: u64 = 1024;
/// How long the disk is given to write back what earlier work left.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);
/// The pause after the writeback drained, for the device's own cache and the journal's commit.
const SETTLE_QUIET: Duration = Duration::from_secs(1);

/// Waits until the disk has written back what earlier work left (sync, then until /proc/meminfo's
/// Dirty + Writeback are below [`SETTLED_KIB`], then a quiet second), then empties the caches: a
/// measurement neither pays for the other side's deletions nor starts warm. Returns how long it
/// waited; a disk that never drains within [`SETTLE_LIMIT`] is measured anyway, with a warning.
pub fn settle_disk() -> Result<Duration, BenchError> {
    let started = std::time::Instant::now();
    nix::unistd::sync();
    loop {
        let unwritten = unwritten_kib(&read("/proc/meminfo")?).unwrap_or(0);
        if unwritten < SETTLED_KIB {
            break;
        }
        if started.elapsed() > SETTLE_LIMIT {
            eprintln!("sc-bench: warning: {unwritten} KiB still unwritten after {SETTLE_LIMIT:?}; measuring anyway");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(SETTLE_QUIET);
    drop_caches()?;
    Ok(started.elapsed())
}

/// Host PIDs of the processes of a container, the container's first process first.
pub fn container_pids(container_id: &str) -> Result<Vec<i32>, BenchError> {
    let mut pids: Vec<i32> = fs::read_dir("/proc")
        .map_err(host("listing", "/proc"))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid: &i32| {
            fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|cgroup| cgroup_names_container(&cgroup, container_id))
        })
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// Peak resident set size (VmHWM) of a process, in KiB.
pub fn peak_rss_kib(pid: i32) -> Result<u64, BenchError> {
    let path = format!("/proc/{pid}/status");
    let status = read(&path)?;
    status_kib(&status, "VmHWM").ok_or_else(|| BenchError::Output { what: path, output: "no VmHWM line".into() })
}

/// Resets a process's peak RSS to its current RSS (proc(5), clear_refs value 5).
pub fn reset_peak_rss(pid: i32) -> Result<(), BenchError> {
    let path = format!("/proc/{pid}/clear_refs");
    fs::write(&path, "5\n").map_err(host("writing", path))
}

/// When a process started, to the clock tick (10 ms with the usual USER_HZ of 100).
pub fn process_start(pid: i32) -> Result<SystemTime, BenchError> {
    let path = format!("/proc/{pid}/stat");
    let ticks = stat_start_ticks(&read(&path)?).ok_or_else(|| BenchError::Output { what: path.clone(), output: "no start time".into() })?;
    let boot = boot_time_seconds(&read("/proc/stat")?)
        .ok_or_else(|| BenchError::Output { what: "/proc/stat".into(), output: "no btime".into() })?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().filter(|hz| *hz > 0).unwrap_or(100);
    let since_boot = Duration::from_secs_f64(ticks as f64 / per_second as f64);
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(boot) + since_boot)
}

/// The children of a process (its threads' children lists).
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("children")).ok())
        .flat_map(|list| list.split_whitespace().filter_map(|pid| pid.parse().ok()).collect::<Vec<i32>>())
        .collect()
}

pub fn mounts_left(data_root: &str) -> Result<Vec<String>, BenchError> {
    Ok(product_mounts(&read("/proc/self/mountinfo")?, data_root))
}

/// Entries directly under a directory of the node (none when it does not exist).
pub fn entries(dir: &Path) -> Result<Vec<String>, BenchError> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries.filter_map(|entry| Some(entry.ok()?.file_name().to_string_lossy().into_owned())).collect()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(host("listing", dir.display().to_string())(error)),
    }
}

/// One line describing the machine, for the report's header.
pub fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo").ok().and_then(|info| {
        info.lines().find_map(|line| line.strip_prefix("model name")?.split_once(':').map(|(_, model)| model.trim().to_owned()))
    });
    let memory = fs::read_to_string("/proc/meminfo").ok().and_then(|info| status_kib(&info, "MemTotal"));
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!(
        "{cores} cores ({}), {:.1} GiB memory, Linux {}",
        cpu.unwrap_or_else(|| "unknown CPU".into()),
        memory.unwrap_or(0) as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritten_pages_are_dirty_plus_writeback() {
        let meminfo =
            "MemTotal:       24605236 kB\nDirty:              4096 kB\nWriteback:           512 kB\nWritebackTmp:          0 kB\n";
        assert_eq!(unwritten_kib(meminfo), Some(4608));
        assert_eq!(unwritten_kib("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn peak_rss_is_read_from_the_status_file() {
        let status = "Name:\tcsi-driver\nVmPeak:\t  900 kB\nVmHWM:\t   11264 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmHWM"), Some(11264));
        assert_eq!(status_kib(status, "VmRSS"), Some(10240));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn start_time_survives_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (sc (exec) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(stat_start_ticks(stat), Some(987_654));
        assert_eq!(stat_start_ticks("4242 (x) S 1"), None);
        assert_eq!(boot_time_seconds("cpu 1 2 3\nbtime 1763800000\nprocesses 5\n"), Some(1_763_800_000));
    }

    #[test]
    fn a_container_is_recognised_by_its_id_in_the_cgroup_path() {
        let cgroup = "12:pids:/kubepods/besteffort/pod1234/0123abcd\n1:name=systemd:/kubepods/besteffort/pod1234/0123abcd\n";
        assert!(cgroup_names_container(cgroup, "0123abcd"));
        assert!(!cgroup_names_container(cgroup, "ffff"));
        assert!(!cgroup_names_container(cgroup, ""));
    }

    #[test]
    fn product_mounts_are_found_and_others_ignored() {
        let data = "/var/lib/stoppablecontainer";
        let mountinfo = [
            "30 25 0:40 / /var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/sc-rootfs/mount rw - tmpfs stoppablecontainer rw,size=64k",
            "31 30 0:41 / /var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/sc-rootfs/mount/rootfs rw - overlay overlay rw,lowerdir=/run/l,upperdir=/var/lib/stoppablecontainer/containers/n/a/u/upper,workdir=/var/lib/stoppablecontainer/containers/n/a/u/work",
            "32 30 8:1 /var/lib/stoppablecontainer/control/csi-1 /var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/sc-rootfs/mount/control rw - ext4 /dev/vda rw",
            "40 25 0:50 / /var/lib/kubelet/pods/u2/volumes/kubernetes.io~empty-dir/x rw - tmpfs tmpfs rw",
            "41 25 0:51 / /run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw - overlay overlay rw,lowerdir=/var/lib/containerd/1,upperdir=/var/lib/containerd/2/fs",
            "42 25 8:1 / /var/lib/stoppablecontainer-other rw - ext4 /dev/vda rw",
        ]
        .join("\n");
        let found = product_mounts(&mountinfo, data);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].starts_with("tmpfs at /var/lib/kubelet/pods/u1/"));
        assert!(found[1].starts_with("overlay at "));
        assert!(found[2].ends_with("/mount/control"));
    }
}
