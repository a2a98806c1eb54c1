//! NodePublishVolume / NodeUnpublishVolume latency of the real plugin (release build, real gRPC
//! over a Unix socket, real mounts), next to the cost of a bare `mount(2)` + `umount(2)` of the
//! same overlay measured in the same run. Needs root.
//!
//!     cargo bench -p csi-driver --bench publish_latency [-- --volumes N]
//!
//! Prints p50/p99 of each and the ratio publish p50 / bare mount p50 (target: under 3). Two
//! rounds: every volume's provider is a new container (a start or resume: the plugin must find
//! the provider's root filesystem), then the same providers again (a consumer restart).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{ConsumerPod, ProviderProcess, World};
use csi_driver::sys::{OverlayDirs, overlay_mount_data};
use nix::mount::{MntFlags, MsFlags, mount, umount2};

fn percentile(samples: &mut [Duration], fraction: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * fraction).round() as usize;
    samples[index]
}

fn row(name: &str, samples: &mut [Duration]) -> Duration {
    let p50 = percentile(samples, 0.50);
    let p99 = percentile(samples, 0.99);
    println!("{name:<34} p50 {:>9.3} ms   p99 {:>9.3} ms", p50.as_secs_f64() * 1e3, p99.as_secs_f64() * 1e3);
    p50
}

fn main() {
    let volumes: usize = std::env::args()
        .skip_while(|arg| arg != "--volumes")
        .nth(1)
        .map(|count| count.parse().expect("--volumes takes a number"))
        .unwrap_or(200);
    if !nix::unistd::geteuid().is_root() {
        eprintln!("publish_latency: run as root (it mounts overlays)");
        std::process::exit(1);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(run(volumes));
}

async fn run(volumes: usize) {
    let mut world = World::new();
    let image = world.image("bench");
    for index in 0..200 {
        std::fs::write(image.join(format!("usr/bin/tool-{index}")), b"#!/bin/sh\n").expect("image file");
    }
    let providers: Vec<ProviderProcess> = (0..volumes).map(|_| ProviderProcess::start(&world, &image)).collect();
    let consumers: Vec<ConsumerPod> = (0..volumes).map(|index| ConsumerPod::new("bench", &format!("sc-{index}"))).collect();
    let cluster: Vec<_> = consumers.iter().zip(&providers).map(|(consumer, provider)| (consumer.clone(), Some(provider))).collect();
    world.set_cluster(&cluster);
    world.start_driver();
    let mut client = world.client().await;

    // Baseline: the same overlay (same lower, a fresh upper/work each time), bare syscalls.
    let baseline_dir = world.dir.path().join("baseline");
    let lower = providers[0].rootfs_mount.clone();
    let mut bare_mount = Vec::with_capacity(volumes);
    let mut bare_umount = Vec::with_capacity(volumes);
    for index in 0..volumes {
        let dir = baseline_dir.join(index.to_string());
        let (upper, work, target) = (dir.join("upper"), dir.join("work"), dir.join("mnt"));
        for path in [&upper, &work, &target] {
            std::fs::create_dir_all(path).expect("baseline dirs");
        }
        // The plugin's own option string, so the baseline mounts exactly what a publish mounts.
        let data = overlay_mount_data(&OverlayDirs { lower: &lower, upper: &upper, work: &work });
        let started = Instant::now();
        mount(Some("overlay"), &target, Some("overlay"), MsFlags::empty(), Some(data.as_str())).expect("bare mount");
        bare_mount.push(started.elapsed());
        let started = Instant::now();
        umount2(&target, MntFlags::empty()).expect("bare umount");
        bare_umount.push(started.elapsed());
    }

    // The floor any publish has: one gRPC round trip (Probe, an empty call) plus the three mounts
    // a publish makes (the volume tmpfs, the overlay, the control bind), as bare syscalls.
    let mut probe = Vec::with_capacity(volumes);
    for _ in 0..volumes {
        let started = Instant::now();
        client.identity.probe(sc_proto::csi::ProbeRequest {}).await.expect("probe");
        probe.push(started.elapsed());
    }
    let control_source = baseline_dir.join("control-source");
    std::fs::create_dir_all(&control_source).expect("control source");
    let mut bare_three = Vec::with_capacity(volumes);
    for index in 0..volumes {
        let dir = baseline_dir.join(index.to_string());
        let (upper, work, target) = (dir.join("upper"), dir.join("work"), dir.join("mnt"));
        // The plugin's own option string, so the baseline mounts exactly what a publish mounts.
        let data = overlay_mount_data(&OverlayDirs { lower: &lower, upper: &upper, work: &work });
        let started = Instant::now();
        mount(Some("bench"), &target, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755,size=64k")).expect("tmpfs");
        std::fs::create_dir(target.join("rootfs")).expect("mkdir");
        std::fs::create_dir(target.join("control")).expect("mkdir");
        mount(Some("overlay"), &target.join("rootfs"), Some("overlay"), MsFlags::empty(), Some(data.as_str())).expect("overlay");
        mount(Some(&control_source), &target.join("control"), None::<&str>, MsFlags::MS_BIND, None::<&str>).expect("bind");
        bare_three.push(started.elapsed());
        for path in [target.join("control"), target.join("rootfs"), target.clone()] {
            umount2(&path, MntFlags::empty()).expect("umount");
        }
    }

    let mut rounds = Vec::new();
    for round in ["new provider", "known provider"] {
        let mut publish = Vec::with_capacity(volumes);
        for (index, consumer) in consumers.iter().enumerate() {
            let request = world.publish_request(consumer, &format!("csi-bench-{round:.3}-{index}"));
            let started = Instant::now();
            client.node.node_publish_volume(request).await.expect("publish");
            publish.push(started.elapsed());
        }
        let mut unpublish = Vec::with_capacity(volumes);
        for (index, consumer) in consumers.iter().enumerate() {
            let request = world.unpublish_request(consumer, &format!("csi-bench-{round:.3}-{index}"));
            let started = Instant::now();
            client.node.node_unpublish_volume(request).await.expect("unpublish");
            unpublish.push(started.elapsed());
        }
        rounds.push((round, publish, unpublish));
    }
    let peak_rss_kib = world
        .driver_pid()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|status| status.lines().find(|line| line.starts_with("VmHWM:")).map(str::to_owned))
        .unwrap_or_default();

    println!("\nsc-csi-driver publish latency, {volumes} volumes, one run (real gRPC, real mounts)\n");
    let bare = row("bare mount(2) of the same overlay", &mut bare_mount);
    let bare_un = row("bare umount(2)", &mut bare_umount);
    let grpc = row("empty gRPC call (Probe)", &mut probe);
    let three = row("bare tmpfs + overlay + bind mounts", &mut bare_three);
    let floor = grpc + three;
    println!("{:<34} p50 {:>9.3} ms", "floor (gRPC call + three mounts)", floor.as_secs_f64() * 1e3);
    println!();
    for (round, publish, unpublish) in &mut rounds {
        let published = row(&format!("NodePublishVolume ({round})"), publish);
        let unpublished = row(&format!("NodeUnpublishVolume ({round})"), unpublish);
        println!("  publish p50 / bare mount p50     = {:.2}x (target < 3x)", published.as_secs_f64() / bare.as_secs_f64());
        println!("  publish p50 / floor p50          = {:.2}x", published.as_secs_f64() / floor.as_secs_f64());
        println!("  unpublish p50 / bare umount p50  = {:.2}x\n", unpublished.as_secs_f64() / bare_un.as_secs_f64());
    }
    println!("plugin peak RSS: {}", peak_rss_kib.trim_start_matches("VmHWM:").trim());
    assert!(world.mounts_below(&world.kubelet_dir).is_empty(), "every volume was unmounted");
}
